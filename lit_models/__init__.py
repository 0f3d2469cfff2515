"""Lightning + timm layer: backbones, embedding, head training, fine-tuning and export. Never imports gradio.

Import the submodules you need (``lit_models.backbones``, ``lit_models.embed``, ``lit_models.train``,
``lit_models.export``, ...).
"""

import os

# Head training runs thousands of tiny matrix products. With OpenMP's default spin-waiting, a busy machine (UI,
# embedding job, other processes) makes each one wait for a descheduled worker thread: 5-10x slower on 2 cores.
# Passive waiting fixes that at no measurable cost for the big convolutions. OpenMP reads this once, when torch
# is first imported, so it only helps if lit_models is imported before torch (set it in the environment to be sure).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
