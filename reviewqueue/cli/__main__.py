from .base import main

main()
