"""What users do with the loss: style transfer and texture synthesis, the super-resolution study, and the
independent judges that score them (which share nothing with the loss being judged)."""
