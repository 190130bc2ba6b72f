from healthway.cli import main

main()
