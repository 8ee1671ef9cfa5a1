# tokend — build, test and package.
#   make build   bin/tokend for this machine, version stamped
#   make test    the project test command (scripts/test.sh)
#   make deb     dist/tokend_<version>_amd64.deb (linux/amd64, CGO_ENABLED=0, nfpm)
#   make clean   remove bin/ and dist/

SHELL := /bin/sh
GO    ?= go
NFPM  ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

# A valid Debian version derived from `git describe --tags --always --dirty`
# (see scripts/version.sh); override with `make deb VERSION=1.2.3`.
VERSION ?= $(shell ./scripts/version.sh)
# Reproducible timestamps in the package: the last commit's time when there is one.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
export VERSION SOURCE_DATE_EPOCH

CMD     := ./appliance/cmd/tokend
LDFLAGS := -s -w -X main.version=$(VERSION)
# Staging directory for the package's generated files, and the output directory
# (the packaging tests point both at temporary directories).
DEBDIR  ?= dist/.stage
DIST    ?= dist
DEB     := $(DIST)/tokend_$(VERSION)_amd64.deb
export DEBDIR

.PHONY: all build test deb deb-binary deb-package clean version

all: build

version:
	@echo $(VERSION)

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/tokend $(CMD)

test:
	./scripts/test.sh

deb: deb-binary deb-package

# The binary that goes into the package: linux/amd64, no cgo, so it links no
# shared library at all. -buildmode=pie adds ASLR; the result needs only the
# dynamic loader of libc6 (Essential in Debian) to relocate itself, and lintian
# accepts it (a non-PIE static binary is the lintian error
# statically-linked-binary for packages not built from Debian's Go toolchain).
deb-binary:
	@mkdir -p $(DEBDIR)
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 \
		$(GO) build -buildmode=pie -trimpath -ldflags '$(LDFLAGS)' -o $(DEBDIR)/tokend $(CMD)

# Packages whatever binary is in $(DEBDIR)/tokend (deb-binary puts it there).
deb-package:
	@test -x $(DEBDIR)/tokend || { echo "missing $(DEBDIR)/tokend: run 'make deb'" >&2; exit 1; }
	@mkdir -p $(DEBDIR) $(DIST)
	./scripts/debchangelog.sh "$(VERSION)" "$(SOURCE_DATE_EPOCH)" | gzip -9n > $(DEBDIR)/changelog.gz
	gzip -9n < packaging/tokend.1 > $(DEBDIR)/tokend.1.gz
	rm -f $(DEB)
	$(NFPM) package -p deb -f packaging/nfpm.yaml -t $(DIST)/
	@echo "built $(DEB)"

clean:
	rm -rf bin dist
