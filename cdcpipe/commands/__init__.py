"""The CLI's command groups, one module each with its ``register(subparsers)``; ``cli`` lists them."""
