# Thin wrappers over ./dev, which installs what is missing first.
.PHONY: run test lint fix docs plan
run:
	./dev up
test:
	./dev test
lint:
	./dev lint
fix:
	./dev fix
docs:
	./dev docs
plan:
	./dev wave plan
