# weft-run across machines: tests with a real nats-server (registered by ../CMakeLists.txt)
