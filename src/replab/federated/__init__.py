"""FeDeRA: federated fine-tuning with SVD-initialised (PiSSA) LoRA, on Flower and PEFT."""
