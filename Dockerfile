# The cascade daemon, and `cascade fakes` for the local stack
# (docs/local-stack.md). Build: docker build -t cascade .
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
# The dependencies first, built on stub sources: this layer is rebuilt only
# when Cargo.toml or Cargo.lock change, not on every edit of src/.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src ./src
# Newer than the stubs' build, so cargo rebuilds the crate itself.
RUN touch src/lib.rs src/main.rs \
 && cargo build --release --locked

FROM debian:bookworm-20251229-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cascade \
 && useradd --system --uid 10001 --gid cascade --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin cascade
COPY --from=build /src/target/release/cascade /usr/local/bin/cascade
# The shipped configuration (the compose stack mounts the host's copy over
# it, read-only) and the example notifications for `cascade send`.
WORKDIR /etc/cascade
COPY cascade.toml ./
COPY channels ./channels
COPY policies ./policies
COPY examples ./examples
# Readable by the daemon's user whatever modes the checkout had (a umask
# of 077 would leave them root's alone).
RUN chmod -R a+rX /etc/cascade
ENV CASCADE_CONFIG=/etc/cascade/cascade.toml \
    CASCADE_HTTP_LISTEN=0.0.0.0:8080
# Not root: the daemon needs no privilege (its ports are above 1024, it
# writes nothing to disk).
USER 10001:10001
EXPOSE 8080 9090
# GET /readyz on the admin listener (http.admin_listen; a wildcard address
# is asked on loopback), exit 0 or 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["cascade", "health", "--timeout", "3s"]
ENTRYPOINT ["cascade"]
CMD ["run"]
