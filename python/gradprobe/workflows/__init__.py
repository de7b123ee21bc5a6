"""Ready-made BERT training workflows with gradprobe attached: fine-tuning on product reviews (demo,
finetune), MLM + NSP pretraining (pretrain), the local model list (models), a bag-of-n-grams baseline
and fault injection. torch and transformers load only when a workflow runs."""
