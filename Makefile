# Thin wrappers over ./dev, which installs what is missing first.
.PHONY: run test check fix plan
run:
	./dev up
test:
	./dev test
check:
	./dev check
fix:
	./dev fix
plan:
	./dev wave plan
