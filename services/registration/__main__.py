from services.registration.app import main

main()
