"""``lightmedseg demo``'s parts besides the command line (:mod:`nnunetv2_lightmedseg.cli.demo` runs them):

* :mod:`.dataset` -- checks a user's nnU-Net raw dataset folder before anything is written
* :mod:`.workdir` -- the work folder: created or reused only when that deletes nothing the demo did not create
* :mod:`.report`  -- the Dice/time report and where the kept model is

Running nnU-Net's commands, their environment and the summary.json they write are shared with other features:
:mod:`nnunetv2_lightmedseg.utils` (``process``, ``nnunet_env``, ``summary``).
"""
from ..errors import LightMedSegError


class DemoError(LightMedSegError):
    """A problem the user can fix (bad path, malformed dataset, failed step); printed without a traceback."""
