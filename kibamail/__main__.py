from kibamail.cli import main

main()
