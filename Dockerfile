# Packages the static skiff binary; there is no build stage here.
# Build it first with:  scripts/build-static.sh
# (produces target/x86_64-unknown-linux-musl/release/skiff), then: docker build -t skiff .
FROM scratch
COPY target/x86_64-unknown-linux-musl/release/skiff /bin/skiff
ENTRYPOINT ["/bin/skiff"]
CMD ["server"]
