"""Protocol fuzzer (issue 7): frame generation, harnesses and the short seeded runs."""
