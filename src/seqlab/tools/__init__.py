"""What the tools do on a trained model (sampling, embedding analysis), shared by entry points and callbacks."""
