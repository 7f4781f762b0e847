package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// identities are the key material of a ledger's members, read from a
// certificates folder: every member's certificate (verified against the
// folder's CA, naming exactly that member, with an Ed25519 key) and the
// private keys of the members this process runs.
type identities struct {
	dir   string // where they came from, for messages; "memory" if made in memory
	roots *x509.CertPool
	certs map[string]*x509.Certificate
	der   map[string][]byte
	keys  map[string]ed25519.PublicKey // every member's public key
	priv  map[string]ed25519.PrivateKey
}

// loadIdentities reads dir for members, with the private keys of the
// members in self.
func loadIdentities(dir string, members, self []string) (*identities, error) {
	files := certFiles{}
	read := func(name string) error {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		files[name] = data
		return nil
	}
	if err := read("ca.crt"); err != nil {
		return nil, fmt.Errorf("certificates folder %s: %w", dir, err)
	}
	for _, id := range members {
		if err := read(certName(id)); err != nil {
			return nil, fmt.Errorf("certificates folder %s has no certificate for client %s (%w); make one for every client with \"threeclients certs\"", dir, quoteID(id), err)
		}
	}
	for _, id := range self {
		path := filepath.Join(dir, keyName(id))
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("key of client %s: %w", quoteID(id), err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("key %s is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
		}
		if err := read(keyName(id)); err != nil {
			return nil, fmt.Errorf("key of client %s: %w", quoteID(id), err)
		}
	}
	ids, err := parseIdentities(files, members, self)
	if err != nil {
		return nil, fmt.Errorf("certificates folder %s: %w", dir, err)
	}
	ids.dir = dir
	return ids, nil
}

// parseIdentities checks the PEM files of a certificates folder (see
// loadIdentities).
func parseIdentities(files certFiles, members, self []string) (*identities, error) {
	ca, err := parseCert(files["ca.crt"])
	if err != nil {
		return nil, fmt.Errorf("ca.crt: %w", err)
	}
	if !ca.IsCA {
		return nil, errors.New("ca.crt is not a CA certificate")
	}
	ids := &identities{roots: x509.NewCertPool(), certs: map[string]*x509.Certificate{},
		der: map[string][]byte{}, keys: map[string]ed25519.PublicKey{}, priv: map[string]ed25519.PrivateKey{}}
	ids.roots.AddCert(ca)
	for _, id := range members {
		name := certName(id)
		cert, err := parseCert(files[name])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if err := checkMemberCert(cert, ids.roots, members); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if cert.Subject.CommonName != id {
			return nil, fmt.Errorf("%s is a certificate for client %s, not %s", name, quoteID(cert.Subject.CommonName), quoteID(id))
		}
		ids.certs[id] = cert
		ids.der[id] = cert.Raw
		ids.keys[id] = cert.PublicKey.(ed25519.PublicKey) // checked by checkMemberCert
	}
	for _, id := range self {
		name := keyName(id)
		key, err := parseKey(files[name])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if !bytes.Equal(key.Public().(ed25519.PublicKey), ids.keys[id]) {
			return nil, fmt.Errorf("%s does not belong to %s", name, certName(id))
		}
		ids.priv[id] = key
	}
	return ids, nil
}

// checkMemberCert checks that cert chains to roots for TLS client and
// server auth, has an Ed25519 key, and names exactly one member: its
// CommonName and its only DNS name are that member's id.
func checkMemberCert(cert *x509.Certificate, roots *x509.CertPool, members []string) error {
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("not usable for TLS client auth under ca.crt: %w", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("not usable for TLS server auth under ca.crt: %w", err)
	}
	if _, ok := cert.PublicKey.(ed25519.PublicKey); !ok {
		return fmt.Errorf("key is %T, want Ed25519 (the key also signs blocks)", cert.PublicKey)
	}
	return certNamesOneMember(cert, members)
}

// certNamesOneMember checks that cert names exactly one member id, as its
// CommonName and its only subject alternative name (a DNS name); a
// certificate naming several identities, or none, is refused.
func certNamesOneMember(cert *x509.Certificate, members []string) error {
	cn := cert.Subject.CommonName
	if !isMember(cn, members) {
		return fmt.Errorf("certificate names %s, which is no client of this ledger", quoteID(cn))
	}
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != cn || len(cert.IPAddresses)+len(cert.EmailAddresses)+len(cert.URIs) != 0 {
		return fmt.Errorf("certificate for client %s must name it alone (CommonName and a single DNS name %q); it names DNS %q, IP %v, email %q, URI %v",
			quoteID(cn), cn, cert.DNSNames, cert.IPAddresses, cert.EmailAddresses, cert.URIs)
	}
	return nil
}

func parseCert(data []byte) (*x509.Certificate, error) {
	b, rest := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("want exactly one PEM CERTIFICATE")
	}
	return x509.ParseCertificate(b.Bytes)
}

func parseKey(data []byte) (ed25519.PrivateKey, error) {
	b, rest := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("want exactly one PEM PRIVATE KEY (PKCS#8)")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want Ed25519", k)
	}
	return key, nil
}

// tlsConfig is the mutual TLS configuration of member id. A peer's
// certificate must chain to the folder's CA, name exactly one member, and
// carry the key that the genesis holds for that member; the transport
// checks that the member named is the one the peer claims to be.
func (ids *identities) tlsConfig(id string) *tls.Config {
	members := make([]string, 0, len(ids.keys))
	for m := range ids.keys {
		members = append(members, m)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{ids.der[id]}, PrivateKey: ids.priv[id], Leaf: ids.certs[id]}},
		RootCAs:      ids.roots,
		ClientCAs:    ids.roots,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
		// Called after the chain is verified, on both sides.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no certificate")
			}
			leaf := cs.PeerCertificates[0]
			if err := certNamesOneMember(leaf, members); err != nil {
				return err
			}
			if pub, ok := leaf.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(ids.keys[leaf.Subject.CommonName]) {
				return fmt.Errorf("certificate for client %s does not carry the key the ledger's genesis holds for it", quoteID(leaf.Subject.CommonName))
			}
			return nil
		},
	}
}

// memoryIdentities makes fresh key material for members in memory.
func memoryIdentities(members []string) (*identities, error) {
	files, err := makeCerts(members)
	if err != nil {
		return nil, err
	}
	ids, err := parseIdentities(files, members, members)
	if err != nil {
		return nil, err
	}
	ids.dir = "memory"
	return ids, nil
}

// identitiesFor finds the key material of the clients self: the folder
// given with -tls; else, with -memory and every client in this process,
// made in memory; else <data>/certs, made there on first start.
func identitiesFor(opts options, tlsDir string, self []string) (*identities, error) {
	if tlsDir != "" {
		return loadIdentities(tlsDir, opts.members, self)
	}
	if opts.memory && len(self) == len(opts.members) {
		return memoryIdentities(opts.members)
	}
	dir := filepath.Join(opts.dataDir, "certs")
	if err := ensureAutoCerts(dir, opts.members); err != nil {
		return nil, err
	}
	ids, err := loadIdentities(dir, opts.members, self)
	if err != nil {
		return nil, fmt.Errorf("%w (this folder was made on a first start; delete it to make new certificates, which starts a new ledger)", err)
	}
	return ids, nil
}
