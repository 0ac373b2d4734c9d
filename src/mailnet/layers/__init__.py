"""Building blocks (ERLA, EMCAM, RPF, noise, ...), each in a module named for it."""
