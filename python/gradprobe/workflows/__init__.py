"""Ready-made training workflows: BERT fine-tuning on product reviews (MLM+NSP pretraining to come)."""
