"""Hydra's errors about the command line (unknown key, unknown option of a group, wrong type, bad
syntax) as one UserError line that names the override, the problem and the fix, with a "did you mean"
for near misses. Hydra prints several lines (and the config search path) for each of these."""

from __future__ import annotations

import re
from typing import Optional

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from docvlm.config import unknown_key_message
from docvlm.errors import UserError, did_you_mean, one_line

HELP = "python launch.py --help"


def translate(err: BaseException) -> Optional[UserError]:
    """The UserError for one of Hydra's command-line errors; None for anything else."""
    if isinstance(err, OverrideParseException):
        first = str(err).splitlines()[0] if str(err) else "cannot parse an override"
        return UserError(f"{first}: write overrides as key=value, e.g. processing.batch_size=4 (see {HELP})")
    if isinstance(err, MissingConfigException):
        return _missing_option(err)
    if isinstance(err, ConfigCompositionException):
        return _composition(err)
    return None


def _missing_option(err: MissingConfigException) -> UserError:
    """`model=tiny_intrnvl`: no such file in the group; Hydra lists the options in its message."""
    text = str(err)
    found = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
    options = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
    if found is None:
        return UserError(f"{one_line(text.split('Config search path')[0])} (see {HELP})")
    group, option = found.groups()
    hint = did_you_mean(option, options)
    return UserError(f"{group}={option}: no such {group}" + (f"; did you mean {group}={hint}?" if hint else "")
                     + (f" (options: {', '.join(options)})" if options else f" (see {HELP})"))


def _composition(err: ConfigCompositionException) -> UserError:
    cause = err.__cause__
    key = getattr(cause, "full_key", None)
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and key:
        return UserError(unknown_key_message(key))
    if isinstance(cause, OmegaConfBaseException) and key:
        override = re.search(r"override (\S+)", str(err))
        what = override.group(1) if override else key
        reason = str(cause).splitlines()[0]
        return UserError(f"invalid value {what}: {reason} (python launch.py --cfg job shows every key's value)")
    return UserError(f"{one_line(str(err))} (see {HELP})")
