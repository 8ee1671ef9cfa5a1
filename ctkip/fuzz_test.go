package ctkip

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Seeds shared by the fuzz targets: the golden messages and real layouts.
func fuzzSeeds(f *testing.F, files ...string) {
	for _, name := range files {
		b, err := readTestdata(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzParseClientRequest(f *testing.F) {
	fuzzSeeds(f, "client_hello_request.xml", "client_nonce_request.xml", "hello_response.xml")
	f.Add([]byte(`<a:Envelope xmlns:a="x"><a:Body><ClientRequest xmlns="` + nsService + `"><AuthData>1</AuthData><Request>PEEvPg==</Request></ClientRequest></a:Body></a:Envelope>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var d xdoc
		req, err := parseClientRequest(&d, body)
		if err != nil {
			return
		}
		if len(req.Message) == 0 {
			t.Error("accepted an empty inner message")
		}
		if bytes.Contains(body, []byte("<!DOCTYPE")) {
			t.Error("accepted a DTD")
		}
	})
}

func FuzzParseClientMessage(f *testing.F) {
	f.Add([]byte(clientHello))
	f.Add(appendClientNonce(nil, vbSessionID, bytes.Repeat([]byte{7}, 128), bytes.Repeat([]byte{1}, 16)))
	fuzzSeeds(f, "server_hello.xml", "server_finished.xml")
	f.Fuzz(func(t *testing.T, msg []byte) {
		var d xdoc
		m, err := parseClientMessage(&d, msg)
		if err != nil {
			return
		}
		if m.Kind == kindClientNonce && m.SessionID == "" {
			t.Error("ClientNonce without SessionID")
		}
	})
}

func FuzzParseServerResponse(f *testing.F) {
	fuzzSeeds(f, "hello_response.xml", "finished_response.xml", "fault_invalid_code.xml")
	f.Fuzz(func(t *testing.T, body []byte) {
		var d xdoc
		_, _ = parseServerResponse(&d, body)
	})
}

func FuzzParseServerHello(f *testing.F) {
	fuzzSeeds(f, "server_hello.xml", "server_finished.xml")
	f.Fuzz(func(t *testing.T, msg []byte) {
		var d xdoc
		h, err := parseServerHello(&d, msg)
		if err != nil {
			return
		}
		if len(h.Nonce) != 16 || h.SessionID == "" {
			t.Errorf("accepted %+v", h)
		}
		_, _ = publicKey(h.Modulus, h.Exponent)
	})
}

func FuzzParseServerFinished(f *testing.F) {
	fuzzSeeds(f, "server_finished.xml", "server_hello.xml")
	f.Fuzz(func(t *testing.T, msg []byte) {
		var d xdoc
		fin, err := parseServerFinished(&d, msg)
		if err != nil {
			return
		}
		if len(fin.MAC) != 16 || !validSerial(fin.Serial) {
			t.Errorf("accepted %+v", fin)
		}
	})
}

// FuzzXMLUnescape checks the entity decoder never panics and is the identity
// on text without '&'.
func FuzzXMLUnescape(f *testing.F) {
	f.Add([]byte("a&lt;b&#x41;&#66;&amp;"))
	f.Fuzz(func(t *testing.T, s []byte) {
		out, err := appendUnescaped(nil, s)
		if err == nil && bytes.IndexByte(s, '&') < 0 && !bytes.Equal(out, s) {
			t.Errorf("changed %q to %q", s, out)
		}
	})
}

// FuzzServeHTTP sends arbitrary bodies through the whole handler with an
// arbitrary Authorization: no code is valid, so nothing may reach the
// Auditor, open a session or be charged other than as a failed code check.
func FuzzServeHTTP(f *testing.F) {
	fuzzSeeds(f, "client_hello_request.xml", "client_nonce_request.xml")
	f.Add([]byte("garbage"))
	key := testKey(f)
	aud := &recAuditor{}
	srv, err := NewServer(Config{Key: key, Backend: newMemBackend(nil), Auditor: aud})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, auth := range []string{"", "123456789012"} {
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			req.Header.Set("Content-Type", contentTypeCTKIP)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			var d xdoc
			if _, err := parseServerResponse(&d, rec.Body.Bytes()); err == nil {
				t.Fatalf("not refused: %s", rec.Body.Bytes())
			}
		}
		if n := srv.pendingSessions(); n != 0 {
			t.Errorf("%d sessions opened", n)
		}
		if got := aud.take(); len(got) != 0 {
			t.Errorf("audited %v", got)
		}
	})
}
