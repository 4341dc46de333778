"""Training: config -> objects, the LightningModule, callbacks, fine-tuning, loggers, run dirs."""
