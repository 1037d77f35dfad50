"""Recovery: fine-tuning compressed models with knowledge distillation and quantisation-aware training."""
