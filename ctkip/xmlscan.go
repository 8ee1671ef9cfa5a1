package ctkip

import (
	"bytes"
	"errors"
	"strconv"
	"unicode/utf8"
)

// This file is a deliberately small, non-validating XML reader that builds a
// flat, read-only tree. CT-KIP documents are tiny and only a handful of
// elements matter; encoding/xml's reflection and per-token allocations would
// cost as much as the RSA work on the hot path. The reader refuses DTDs (and
// with them entity declarations), resolves namespaces, matches end tags,
// decodes the five predefined entities and character references, and keeps
// slices into the input wherever it can.

const (
	maxXMLDepth = 64
	maxXMLNodes = 4096
)

var (
	errXMLSyntax   = errors.New("ctkip: malformed XML")
	errXMLDTD      = errors.New("ctkip: XML DTDs and entity declarations are not accepted")
	errXMLTooLarge = errors.New("ctkip: XML document too deep or too large")
)

type xattr struct {
	local []byte // local name; prefixes of ordinary attributes are ignored
	value []byte // entity-decoded
}

type xnode struct {
	qname      []byte // raw qualified name, for end-tag matching
	local      []byte
	space      []byte // resolved namespace URI (empty = no namespace)
	parent     int
	attrs      [2]int // range in xdoc.attrs
	nsMark     int    // len(xdoc.ns) before this element's declarations
	text       []byte // concatenated character data (whitespace-only runs dropped)
	ownsText   bool   // text is a private copy, safe to append to
	selfClosed bool
}

type nsBinding struct {
	prefix []byte
	uri    []byte
}

// xdoc is reusable: parse resets it while keeping the slices' capacity.
type xdoc struct {
	nodes []xnode
	attrs []xattr
	ns    []nsBinding
	stack []int
}

func isXMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func allSpace(b []byte) bool {
	for _, c := range b {
		if !isXMLSpace(c) {
			return false
		}
	}
	return true
}

// containsDTD reports whether b holds a DOCTYPE or ENTITY declaration; used as a
// cheap up-front refusal before any parsing, on every layer.
func containsDTD(b []byte) bool {
	for {
		j := bytes.Index(b, []byte("<!"))
		if j < 0 {
			return false
		}
		b = b[j+2:]
		if hasFoldPrefix(b, "DOCTYPE") || hasFoldPrefix(b, "ENTITY") {
			return true
		}
	}
}

func hasFoldPrefix(b []byte, p string) bool {
	return len(b) >= len(p) && bytes.EqualFold(b[:len(p)], []byte(p))
}

func (d *xdoc) reset() {
	d.nodes = d.nodes[:0]
	d.attrs = d.attrs[:0]
	d.ns = d.ns[:0]
	d.stack = d.stack[:0]
}

func (d *xdoc) parse(data []byte) error {
	d.reset()
	if containsDTD(data) {
		return errXMLDTD
	}
	// Skip a UTF-8 byte order mark.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	pos := 0
	for pos < len(data) {
		if data[pos] != '<' {
			end := bytes.IndexByte(data[pos:], '<')
			if end < 0 {
				end = len(data)
			} else {
				end += pos
			}
			seg := data[pos:end]
			pos = end
			if allSpace(seg) {
				continue
			}
			if len(d.stack) == 0 {
				return errXMLSyntax
			}
			if err := d.addText(d.stack[len(d.stack)-1], seg, true); err != nil {
				return err
			}
			continue
		}
		rest := data[pos:]
		switch {
		case bytes.HasPrefix(rest, []byte("<?")):
			end := bytes.Index(rest[2:], []byte("?>"))
			if end < 0 {
				return errXMLSyntax
			}
			pos += 2 + end + 2
		case bytes.HasPrefix(rest, []byte("<!--")):
			end := bytes.Index(rest[4:], []byte("-->"))
			if end < 0 {
				return errXMLSyntax
			}
			pos += 4 + end + 3
		case bytes.HasPrefix(rest, []byte("<![CDATA[")):
			end := bytes.Index(rest[9:], []byte("]]>"))
			if end < 0 || len(d.stack) == 0 {
				return errXMLSyntax
			}
			if err := d.addText(d.stack[len(d.stack)-1], rest[9:9+end], false); err != nil {
				return err
			}
			pos += 9 + end + 3
		case bytes.HasPrefix(rest, []byte("<!")):
			return errXMLDTD
		case bytes.HasPrefix(rest, []byte("</")):
			n, err := d.endTag(rest)
			if err != nil {
				return err
			}
			pos += n
		default:
			n, err := d.startTag(rest)
			if err != nil {
				return err
			}
			pos += n
		}
	}
	if len(d.stack) != 0 || len(d.nodes) == 0 {
		return errXMLSyntax
	}
	return nil
}

// addText appends character data to node i. Whitespace-only runs are dropped by
// the caller; decode is false for CDATA sections.
func (d *xdoc) addText(i int, seg []byte, decode bool) error {
	n := &d.nodes[i]
	needDecode := decode && bytes.IndexByte(seg, '&') >= 0
	if len(n.text) == 0 && !n.ownsText && !needDecode {
		n.text = seg
		return nil
	}
	if !n.ownsText {
		n.text = append([]byte(nil), n.text...)
		n.ownsText = true
	}
	if !decode {
		n.text = append(n.text, seg...)
		return nil
	}
	var err error
	n.text, err = appendUnescaped(n.text, seg)
	return err
}

// nameEnd returns the length of the XML name at the start of b.
func nameEnd(b []byte) int {
	for i, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r', '/', '>', '=', '<', '"', '\'', '&':
			return i
		}
	}
	return len(b)
}

func skipSpace(b []byte, p int) int {
	for p < len(b) && isXMLSpace(b[p]) {
		p++
	}
	return p
}

func splitQName(q []byte) (prefix, local []byte) {
	if i := bytes.IndexByte(q, ':'); i >= 0 {
		return q[:i], q[i+1:]
	}
	return nil, q
}

func (d *xdoc) startTag(b []byte) (int, error) {
	if len(d.stack) == 0 && len(d.nodes) > 0 {
		return 0, errXMLSyntax // a second root element
	}
	if len(d.stack) >= maxXMLDepth || len(d.nodes) >= maxXMLNodes {
		return 0, errXMLTooLarge
	}
	p := 1
	ne := nameEnd(b[p:])
	if ne == 0 {
		return 0, errXMLSyntax
	}
	qname := b[p : p+ne]
	p += ne
	node := xnode{qname: qname, parent: -1, nsMark: len(d.ns)}
	node.attrs[0] = len(d.attrs)
	if len(d.stack) > 0 {
		node.parent = d.stack[len(d.stack)-1]
	}
	for {
		p = skipSpace(b, p)
		if p >= len(b) {
			return 0, errXMLSyntax
		}
		if b[p] == '>' {
			p++
			break
		}
		if b[p] == '/' {
			if p+1 >= len(b) || b[p+1] != '>' {
				return 0, errXMLSyntax
			}
			node.selfClosed = true
			p += 2
			break
		}
		ne := nameEnd(b[p:])
		if ne == 0 {
			return 0, errXMLSyntax
		}
		aname := b[p : p+ne]
		p = skipSpace(b, p+ne)
		if p >= len(b) || b[p] != '=' {
			return 0, errXMLSyntax
		}
		p = skipSpace(b, p+1)
		if p >= len(b) || (b[p] != '"' && b[p] != '\'') {
			return 0, errXMLSyntax
		}
		q := b[p]
		end := bytes.IndexByte(b[p+1:], q)
		if end < 0 {
			return 0, errXMLSyntax
		}
		raw := b[p+1 : p+1+end]
		p += 1 + end + 1
		if bytes.IndexByte(raw, '<') >= 0 {
			return 0, errXMLSyntax
		}
		val := raw
		if bytes.IndexByte(raw, '&') >= 0 {
			var err error
			if val, err = appendUnescaped(nil, raw); err != nil {
				return 0, err
			}
		}
		switch {
		case string(aname) == "xmlns":
			d.ns = append(d.ns, nsBinding{prefix: nil, uri: val})
		case bytes.HasPrefix(aname, []byte("xmlns:")):
			if len(aname) == len("xmlns:") {
				return 0, errXMLSyntax
			}
			d.ns = append(d.ns, nsBinding{prefix: aname[len("xmlns:"):], uri: val})
		default:
			_, local := splitQName(aname)
			d.attrs = append(d.attrs, xattr{local: local, value: val})
		}
	}
	node.attrs[1] = len(d.attrs)
	prefix, local := splitQName(qname)
	if len(local) == 0 {
		return 0, errXMLSyntax
	}
	node.local = local
	space, ok := d.lookupNS(prefix)
	if !ok {
		return 0, errXMLSyntax // unbound prefix
	}
	node.space = space
	d.nodes = append(d.nodes, node)
	if node.selfClosed {
		d.ns = d.ns[:node.nsMark]
	} else {
		d.stack = append(d.stack, len(d.nodes)-1)
	}
	return p, nil
}

func (d *xdoc) lookupNS(prefix []byte) ([]byte, bool) {
	for i := len(d.ns) - 1; i >= 0; i-- {
		if bytes.Equal(d.ns[i].prefix, prefix) {
			return d.ns[i].uri, true
		}
	}
	if len(prefix) == 0 {
		return nil, true
	}
	if string(prefix) == "xml" {
		return []byte("http://www.w3.org/XML/1998/namespace"), true
	}
	return nil, false
}

func (d *xdoc) endTag(b []byte) (int, error) {
	p := 2
	ne := nameEnd(b[p:])
	qname := b[p : p+ne]
	p = skipSpace(b, p+ne)
	if p >= len(b) || b[p] != '>' || len(d.stack) == 0 {
		return 0, errXMLSyntax
	}
	top := d.stack[len(d.stack)-1]
	if !bytes.Equal(d.nodes[top].qname, qname) {
		return 0, errXMLSyntax
	}
	d.stack = d.stack[:len(d.stack)-1]
	d.ns = d.ns[:d.nodes[top].nsMark]
	return p + 1, nil
}

// appendUnescaped decodes the predefined entities and character references.
// Any other entity is an error (there is no DTD that could declare one).
func appendUnescaped(dst, s []byte) ([]byte, error) {
	for len(s) > 0 {
		i := bytes.IndexByte(s, '&')
		if i < 0 {
			return append(dst, s...), nil
		}
		dst = append(dst, s[:i]...)
		s = s[i:]
		j := bytes.IndexByte(s, ';')
		if j < 2 || j > 10 {
			return dst, errXMLSyntax
		}
		ent := s[1:j]
		s = s[j+1:]
		switch string(ent) {
		case "lt":
			dst = append(dst, '<')
		case "gt":
			dst = append(dst, '>')
		case "amp":
			dst = append(dst, '&')
		case "quot":
			dst = append(dst, '"')
		case "apos":
			dst = append(dst, '\'')
		default:
			if ent[0] != '#' || len(ent) < 2 {
				return dst, errXMLSyntax
			}
			var v uint64
			var err error
			if ent[1] == 'x' {
				v, err = strconv.ParseUint(string(ent[2:]), 16, 32)
			} else {
				v, err = strconv.ParseUint(string(ent[1:]), 10, 32)
			}
			if err != nil || v == 0 || !utf8.ValidRune(rune(v)) {
				return dst, errXMLSyntax
			}
			dst = utf8.AppendRune(dst, rune(v))
		}
	}
	return dst, nil
}

// child returns the index of the first child of parent with the given local
// name, or -1. Nodes are in document order, so parent's descendants form a
// contiguous run right after it.
func (d *xdoc) child(parent int, local string) int {
	if parent < 0 {
		return -1
	}
	for i := parent + 1; i < len(d.nodes) && d.nodes[i].parent >= parent; i++ {
		if d.nodes[i].parent == parent && string(d.nodes[i].local) == local {
			return i
		}
	}
	return -1
}

// path follows child links by local name from n.
func (d *xdoc) path(n int, locals ...string) int {
	for _, l := range locals {
		n = d.child(n, l)
	}
	return n
}

func (d *xdoc) attr(n int, local string) ([]byte, bool) {
	if n < 0 {
		return nil, false
	}
	a := d.nodes[n].attrs
	for _, at := range d.attrs[a[0]:a[1]] {
		if string(at.local) == local {
			return at.value, true
		}
	}
	return nil, false
}

func (d *xdoc) text(n int) []byte {
	if n < 0 {
		return nil
	}
	return d.nodes[n].text
}

func (d *xdoc) local(n int) string {
	if n < 0 {
		return ""
	}
	return string(d.nodes[n].local)
}
