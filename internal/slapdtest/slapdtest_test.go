package slapdtest_test

import (
	"os/exec"
	"strings"
	"testing"

	"tokend/internal/slapdtest"
)

func TestServerLifecycle(t *testing.T) {
	s := slapdtest.Start(t, slapdtest.Options{Users: 5})
	out := s.Search(t, s.PeopleDN, "(objectClass=inetOrgPerson)", "uid")
	if got := strings.Count(out, "dn: "); got != 5 {
		t.Fatalf("got %d users, want 5:\n%s", got, out)
	}
	s.AddUsers(t, 6, 2)
	s.Replace(t, s.UserDN(1), "mail", "first@example.org")
	s.Rename(t, s.UserDN(2), "uid=renamed")
	s.Delete(t, s.UserDN(3), s.UserDN(4))
	out = s.Search(t, s.PeopleDN, "(objectClass=inetOrgPerson)", "uid", "mail")
	for _, want := range []string{"uid=renamed,", "first@example.org", "uid=user7,"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if got := strings.Count(out, "dn: "); got != 5 {
		t.Errorf("got %d users, want 5", got)
	}

	pid := s.Pid()
	s.Kill()
	if s.Pid() != 0 {
		t.Fatal("slapd still running after Kill")
	}
	if err := exec.Command("ldapsearch", "-x", "-H", s.URL, "-o", "nettimeout=1", "-s", "base", "-b", "", "1.1").Run(); err == nil {
		t.Fatal("search succeeded against a killed server")
	}
	s.Restart(t)
	if s.Pid() == 0 || s.Pid() == pid {
		t.Fatalf("restart: pid %d (was %d)", s.Pid(), pid)
	}
	out = s.Search(t, s.PeopleDN, "(uid=renamed)", "uid")
	if !strings.Contains(out, "uid: renamed") {
		t.Fatalf("data lost across restart:\n%s", out)
	}
}

func TestServerADAndTLS(t *testing.T) {
	s := slapdtest.Start(t, slapdtest.Options{Users: 10, AD: true, TLS: true})
	if s.LDAPSURL == "" || s.CAFile == "" {
		t.Fatal("TLS fields empty")
	}
	out := s.Search(t, s.PeopleDN, "(userAccountControl:1.2.840.113556.1.4.803:=2)", "sAMAccountName")
	if !strings.Contains(out, "sAMAccountName: user10") || strings.Count(out, "dn: ") != 1 {
		t.Fatalf("disabled AD users:\n%s", out)
	}
	cmd := exec.Command("ldapsearch", "-x", "-LLL", "-H", s.LDAPSURL, "-b", s.PeopleDN, "(uid=user1)", "objectGUID")
	cmd.Env = append(cmd.Environ(), "LDAPTLS_CACERT="+s.CAFile)
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "objectGUID:: AQAAACIRRDNVZneImaq7zA==") {
		t.Fatalf("ldaps search: %v\n%s", err, b)
	}
}
