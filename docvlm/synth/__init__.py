"""Synthetic documents with ground truth: invoices, receipts and bank statements.

Deterministic (seeded) renderings with Australian conventions (ABN with a valid checksum, 10% GST,
day-first dates in several printed styles, $ amounts), multi-line descriptions, optional scan-like
degradation, PNG and PDF output, and a ground_truth.csv in the evaluator's format. Modules:
  invoice.py, receipt.py, bank.py   one generator per document type (their docstrings list the layouts)
  commerce.py                       sale, line items and GST shared by invoices and receipts
  fake.py                           people, businesses, addresses, ABNs, dates, amounts
  draw.py / fmt.py                  page canvas, tables, fonts / how values are printed
  truth.py                          typed values -> ground-truth strings by schema field kind
  degrade.py                        rotation, blur, noise, JPEG artefacts
  corpus.py / cli.py                writing a corpus / `python -m docvlm.synth`
"""

from docvlm.synth.cli import main
from docvlm.synth.corpus import GROUND_TRUTH, all_layouts, generate_corpus, generate_samples

__all__ = ["GROUND_TRUTH", "all_layouts", "generate_corpus", "generate_samples", "main"]
