# vantage's container image: built with cargo on Debian 12 (bookworm), run as a non-root user on
# distroless/cc-debian12, which has glibc and libgcc_s (what a Rust binary links) and no shell,
# package manager or other programs. CI checks that the release binary needs no library that
# base lacks (tests/it/container.rs). Build: docker build --build-arg VANTAGE_REVISION=$(git
# rev-parse --short=12 HEAD) -t vantage:0.1.0 .

FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
# The build context has no .git (see .dockerignore); the revision comes in as an argument.
ARG VANTAGE_REVISION=unknown
ENV VANTAGE_REVISION=${VANTAGE_REVISION}
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
RUN cargo build --release --locked --bin vantage

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/vantage /usr/local/bin/vantage
# The shipped config probes vantage itself. Mount yours and point --config.file at it (the Helm
# chart mounts a ConfigMap folder at /etc/vantage/config).
COPY exporter.yml /etc/vantage/exporter.yml
# distroless' "nonroot" user. The Helm chart's securityContext runs the same IDs.
USER 65532:65532
WORKDIR /etc/vantage
EXPOSE 9875
ENTRYPOINT ["/usr/local/bin/vantage"]
CMD ["--config.file=/etc/vantage/exporter.yml"]
