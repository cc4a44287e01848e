# berth in a container, driving the host's Docker engine through its socket.
#
#   docker build -t berth .
#   docker compose -f packaging/compose.yaml up -d
#
# Mounting the engine's socket gives berth (and anyone who controls berth) root on the host: that is
# what managing containers means. Workspace mounts are host paths handed to the engine, so the data dir
# must sit at the same path inside and outside (see packaging/compose.yaml).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin berth \
 && bash scripts/agent.sh

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git tar debootstrap \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/berth /usr/local/bin/berth
# The resident agent every workspace container runs (static; berth finds it beside itself).
COPY --from=build /src/target/release/berth-agent /usr/local/bin/berth-agent
# Run it with the host's network (berth reaches the agent servers the engine publishes on the host's
# loopback) and the data dir bind-mounted at the same path:
#   docker run -d --network host -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /var/lib/berth:/var/lib/berth berth
ENV BERTH_DATA_DIR=/var/lib/berth
ENTRYPOINT ["berth"]
CMD ["serve"]
