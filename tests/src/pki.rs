//! A throwaway certificate authority (openssl) for etcd with TLS and client certificates:
//! a server certificate for an IP, and a client certificate per user (etcd takes the user
//! name from the certificate's CN). Removed on drop.

use std::path::PathBuf;

use anyhow::Result;

use crate::{cmd::run, netns::unique_tag};

pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// A CA, a server certificate for `server_ip`, and client certificates for `users`.
    pub fn new(server_ip: &str, users: &[&str]) -> Result<Self> {
        let pki = Pki {
            dir: std::env::temp_dir().join(unique_tag("pki")),
        };
        std::fs::create_dir_all(&pki.dir)?;
        let ca_key = pki.path("ca.key");
        let ca = pki.path("ca.crt");
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=vtep-test-ca",
                "-keyout",
                &ca_key,
                "-out",
                &ca,
            ],
        )?;
        pki.issue("server", &format!("subjectAltName=IP:{server_ip}"))?;
        for user in users {
            pki.issue(user, "extendedKeyUsage=clientAuth")?;
        }
        Ok(pki)
    }

    fn issue(&self, name: &str, ext: &str) -> Result<()> {
        let (key, csr, crt, extfile) = (
            self.path(&format!("{name}.key")),
            self.path(&format!("{name}.csr")),
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.ext")),
        );
        std::fs::write(&extfile, ext)?;
        run(
            "openssl",
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        )?;
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &self.path("ca.crt"),
                "-CAkey",
                &self.path("ca.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &extfile,
                "-out",
                &crt,
            ],
        )?;
        Ok(())
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// `--cacert F --cert F --key F` for `user`, as etcdctl and `vtep agent` (with an
    /// `etcd-` prefix) take them.
    pub fn client_args(&self, user: &str, flag_prefix: &str) -> Vec<String> {
        vec![
            format!("--{flag_prefix}cacert"),
            self.path("ca.crt"),
            format!("--{flag_prefix}cert"),
            self.path(&format!("{user}.crt")),
            format!("--{flag_prefix}key"),
            self.path(&format!("{user}.key")),
        ]
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
