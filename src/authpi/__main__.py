from authpi.cli import main

main()
