from setup_tool.cli import main

main()
