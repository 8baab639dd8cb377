"""silr align: PPO over an SFT policy with refined safety rewards, held-out evaluation and the safety report.

Modules: ``config`` (AlignConfig), ``policy`` (SFT policy, value model, prompt formatting), ``prompts`` (training and
evaluation prompt sets), ``stages`` (run directory and fingerprints), ``ppo``, ``evaluate``, ``report``, ``plots``,
``pipeline`` and ``cli`` (``python -m align ppo|evaluate|report|pipeline``). Imports run one way: align → reward →
refine.
"""
