"""FaceStudio-style identity-preserving synthesis on diffusers: the hybrid condition module, masked multi-identity
cross-attention, and (in later modules) the encoders, training, sampling, baseline arms and the evaluator."""
