"""The display layer: charts, the notebooks (package data) and the HTML report built from them."""
