"""Helpers that several features share, one implementation each (imported by ``cli``, ``benchmark``, ``deploy``,
``demo``, ``data`` and the tests; this package imports none of them).

* :mod:`.timing`     -- interleaved timing of callables, median/IQR summaries, an inference-forward callable
* :mod:`.process`    -- running a console command: log tee, echo filter, failure with the output's tail
* :mod:`.nnunet_env` -- the ``nnUNet_*`` environment: trainers folder, work-folder layout, per-command settings
* :mod:`.tables`     -- plain-text tables
* :mod:`.summary`    -- nnU-Net's ``summary.json`` (read with nnU-Net's own ``load_summary_json``)
* :mod:`.names`      -- case names of image files, ``DatasetXXX_Name`` folder names
* :mod:`.figures`    -- matplotlib figures without pyplot (no global backend switch)

Every module imports only the standard library at import time (numpy/torch/nnU-Net/matplotlib inside the
functions that need them), so that ``lightmedseg env`` stays instant.
"""
