"""What a handler author touches; everything here is re-exported from `durably`."""
