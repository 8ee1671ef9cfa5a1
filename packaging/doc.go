// Package packaging holds what turns tokend into a Debian package: the nfpm
// configuration (nfpm.yaml), the sysusers.d and tmpfiles.d entries, the
// default /etc/tokend/tokend.yaml, the maintainer scripts, the copyright file,
// the man page and the lintian overrides. `make deb` builds
// dist/tokend_<version>_amd64.deb from them.
//
// The package has no Go code of its own. Its tests run the maintainer scripts
// in a scratch root (DPKG_ROOT), build the .deb with `make deb`, inspect it
// with dpkg-deb, lint it with lintian (no errors allowed) and validate the
// Vagrantfile with `vagrant validate --ignore-provider`.
package packaging
