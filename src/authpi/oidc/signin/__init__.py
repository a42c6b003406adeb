"""Sign-in on the hosted pages, built from strategies (one package per auth-method type).

``flow`` holds a sign-in in progress and decides what comes after each proven factor; ``pages``
serves the pages that belong to no method (the identifier page, the method picker); every method
lives in ``methods/<type>/``, declaring the steps it serves with their routes and templates, and
``registry`` collects them. Nothing outside ``methods/`` names a method type.
"""
