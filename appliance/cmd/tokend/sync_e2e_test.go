package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"tokend/internal/slapdtest"
)

// TestIdentitySourcesEndToEnd creates an LDAP and a SCIM source on a running
// tokend: the LDAP source syncs from a real slapd on demand (and reports the
// directory unreachable once slapd is gone, changing nothing), the SCIM
// source accepts a user pushed with its own bearer token.
func TestIdentitySourcesEndToEnd(t *testing.T) {
	srv := slapdtest.Start(t, slapdtest.Options{Users: 10})
	in := startTokend(t, t.TempDir())

	var ldapSrc struct {
		ID string `json:"id"`
	}
	in.json(t, "POST", "/api/v1/identity-sources", map[string]any{"name": "corp", "type": "ldap",
		"ldap": map[string]any{"url": srv.URL, "bind_dn": srv.ReaderDN, "bind_password": srv.ReaderPassword, "base_dn": srv.PeopleDN}},
		http.StatusCreated, &ldapSrc)
	var run struct {
		Added int    `json:"added"`
		Mode  string `json:"mode"`
	}
	in.call(t, "POST", "/api/v1/identity-sources/"+ldapSrc.ID+"/sync", "", nil, http.StatusOK, &run)
	if run.Added != 10 || run.Mode != "full" {
		t.Fatalf("sync: %+v", run)
	}
	var users struct {
		Total int `json:"total"`
	}
	in.call(t, "GET", "/api/v1/users?source="+ldapSrc.ID, "", nil, http.StatusOK, &users)
	if users.Total != 10 {
		t.Fatalf("users of the source: %d", users.Total)
	}

	srv.Kill()
	var problem struct {
		Code string `json:"code"`
	}
	in.call(t, "POST", "/api/v1/identity-sources/"+ldapSrc.ID+"/sync", "", nil, http.StatusBadGateway, &problem)
	if problem.Code != "sync_failed" {
		t.Fatalf("sync with slapd gone: %+v", problem)
	}
	in.call(t, "GET", "/api/v1/users?source="+ldapSrc.ID, "", nil, http.StatusOK, &users)
	if users.Total != 10 {
		t.Fatalf("a failed sync changed users: %d", users.Total)
	}
	var runs struct {
		Items []struct {
			Error string `json:"error"`
		} `json:"items"`
	}
	in.call(t, "GET", "/api/v1/identity-sources/"+ldapSrc.ID+"/runs", "", nil, http.StatusOK, &runs)
	if len(runs.Items) != 2 || runs.Items[0].Error == "" || runs.Items[1].Error != "" {
		t.Fatalf("runs: %+v", runs)
	}
	metrics := scrape(t, in)
	for _, want := range []string{
		`tokend_sync_runs_total{result="success",type="ldap"} 1`,
		`tokend_sync_runs_total{result="failure",type="ldap"} 1`,
		`tokend_sync_directory_reachable{source="` + ldapSrc.ID + `"} 0`,
		`tokend_sync_changes_total{change="added",type="ldap"} 10`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	var scimSrc struct {
		ID        string `json:"id"`
		SCIMToken string `json:"scim_token"`
	}
	in.json(t, "POST", "/api/v1/identity-sources", map[string]any{"name": "entra", "type": "scim"}, http.StatusCreated, &scimSrc)
	if !strings.HasPrefix(scimSrc.SCIMToken, "tkds_") {
		t.Fatalf("scim token %q", scimSrc.SCIMToken)
	}
	body, _ := json.Marshal(map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
		"userName": "bob@example.org", "externalId": "bob", "active": true, "displayName": "Bob"})
	req, _ := http.NewRequest("POST", in.admin+"/scim/v2/Users", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+scimSrc.SCIMToken)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("SCIM POST /Users: %d %s", resp.StatusCode, b)
	}
	in.call(t, "GET", "/api/v1/users?source="+scimSrc.ID, "", nil, http.StatusOK, &users)
	if users.Total != 1 {
		t.Fatalf("SCIM users: %d", users.Total)
	}
	// The admin token is not a SCIM token.
	req, _ = http.NewRequest("GET", in.admin+"/scim/v2/Users", nil)
	req.Header.Set("Authorization", "Bearer "+in.token)
	resp, err = in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("admin token on SCIM: %d", resp.StatusCode)
	}
	if strings.Contains(in.logs.String(), srv.ReaderPassword) || strings.Contains(in.logs.String(), scimSrc.SCIMToken) {
		t.Fatal("a bind password or SCIM token reached the logs")
	}
}

func scrape(t *testing.T, in *instance) string {
	t.Helper()
	resp, err := in.client.Get(in.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
