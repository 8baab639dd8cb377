"""silr align: RL (PPO, GRPO or RLOO) over an SFT policy with refined safety rewards, held-out evaluation and the
safety report.

Modules: ``config`` (AlignConfig), ``algorithms`` (the algorithm choice; GRPO and RLOO settings and their TRL fields),
``policy`` (SFT policy, value model, prompt formatting), ``prompts`` (training and evaluation prompt sets), ``stages``
(run directory and fingerprints), ``train`` (the training stage), ``ppo``, ``grpo_rloo``, ``evaluate``, ``report``,
``plots``, ``pipeline`` and ``cli`` (``python -m align train|ppo|evaluate|report|pipeline``). Imports run one way:
align → reward → refine.
"""
