"""The residual diffusion: noise schedules, the training objective, samplers and patch splitting."""
