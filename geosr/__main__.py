from geosr.cli import run

run()
