package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is the release version, set at link time:
//
//	go build -ldflags "-X main.version=1.2.3" ./appliance/cmd/tokend
//
// It is the one accepted package-level variable of this package: the linker
// writes it, nothing at run time does.
var version = "dev"

// releaseVersion is the linked version, or for a plain `go build`/`go run`
// the commit the Go toolchain stamped into the binary ("dev+3b6d807c1e2a",
// "+dirty" when the tree had changes), so every build says what it is.
func releaseVersion() string {
	if version != "dev" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	return version + vcsSuffix(info.Settings)
}

func vcsSuffix(settings []debug.BuildSetting) string {
	var rev, modified string
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return ""
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "+dirty"
	}
	return "+" + rev
}

// versionString is what `tokend version` and `tokend --version` print and
// what the serve command logs at start: "tokend 1.2.3 (go1.26.8 linux/amd64)".
func versionString() string {
	return fmt.Sprintf("tokend %s (%s %s/%s)", releaseVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
