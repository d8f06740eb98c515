"""GPU benchmark (issue 8): full-size random-weight models through the real pipeline, against the seed.

  architectures.py  the models by name: full-size replicas (built by docvlm/models/replicas.py from each
                    family adapter's config) with their parameter check, or the tiny models
  workload.py       synthetic documents, the pipeline with routing by true type, call recording
  roofline.py       hardware ceilings and the floor of every model call
  report.py         metrics, ratios, JSON, the printed table
  cli.py            `python scripts/benchmark.py` (argument parsing and the run)
"""
