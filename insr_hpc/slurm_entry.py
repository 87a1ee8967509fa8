"""What a Slurm job step runs: submitit's job runner, with USR2 caught from the start.

``python -u -m insr_hpc.slurm_entry FOLDER`` (written into the sbatch script instead of
``-m submitit.core._submit``). submitit installs its checkpoint-and-requeue handler for
USR2 only after it has unpickled the job, which imports the whole package (torch
included): seconds, and more on a loaded node. Slurm may send the time-limit warning
(``--signal=USR2@s``) up to a minute earlier than asked, so on a short limit it can
land in that window, where USR2's default action kills the process and the job fails.
Here it is caught and remembered (``INSR_EARLY_USR2``); :class:`~insr_hpc.launch.slurm.RunJob`
delivers it again once the real handlers are in place. Kept free of heavy imports.
"""

import os
import signal


def _remember(signum, frame):
    os.environ["INSR_EARLY_USR2"] = "1"


signal.signal(signal.SIGUSR2, _remember)

if __name__ == "__main__":
    from submitit.core.submission import submitit_main

    submitit_main()
