//! Debian's kernel packages, fetched with APT through a configuration of our own (its
//! sources, lists and cache under `target/vm/apt/`), so the system's /etc/apt stays as it
//! is: bookworm-backports, which carries the current kernel, need not be enabled there.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

pub struct Apt {
    dir: PathBuf,
}

const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

impl Apt {
    /// The private configuration, written (or rewritten) under `target/vm/apt/`.
    pub fn private() -> Result<Apt> {
        let dir = super::dir().join("apt");
        for sub in [
            "lists/partial",
            "cache/archives/partial",
            "sources.list.d",
            "preferences.d",
            "debs",
        ] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let (uri, keyring) = system_debian_mirror()?;
        let sources = format!(
            "deb [signed-by={keyring}] {uri} bookworm main\n\
             deb [signed-by={keyring}] {uri} bookworm-backports main\n"
        );
        write_if_changed(&dir.join("sources.list"), &sources)?;
        let d = dir.display();
        let conf = format!(
            "Dir::Etc::sourcelist \"{d}/sources.list\";\n\
             Dir::Etc::sourceparts \"{d}/sources.list.d\";\n\
             Dir::Etc::preferences \"{d}/preferences\";\n\
             Dir::Etc::preferencesparts \"{d}/preferences.d\";\n\
             Dir::State::lists \"{d}/lists\";\n\
             Dir::Cache \"{d}/cache\";\n\
             Acquire::Languages \"none\";\n\
             APT::Sandbox::User \"root\";\n"
        );
        write_if_changed(&dir.join("apt.conf"), &conf)?;
        Ok(Apt { dir })
    }

    fn command(&self, prog: &str) -> Command {
        let mut cmd = Command::new(prog);
        cmd.env("APT_CONFIG", self.dir.join("apt.conf"));
        cmd
    }

    /// `apt-get update` into the private lists, unless they are already there.
    pub fn update(&self, force: bool) -> Result<()> {
        let has_lists = fs::read_dir(self.dir.join("lists"))?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"));
        if has_lists && !force {
            return Ok(());
        }
        run(self.command("apt-get").args(["update", "-qq"]))?;
        Ok(())
    }

    /// The versioned cloud kernel image package whose name starts with
    /// `linux-image-PREFIX` (e.g. `6.1.`), as Debian's `linux-image-cloud-amd64`
    /// metapackage in bookworm or bookworm-backports names it.
    pub fn image_package(&self, prefix: &str) -> Result<String> {
        let show = run(self
            .command("apt-cache")
            .args(["show", "linux-image-cloud-amd64"]))?;
        let want = format!("linux-image-{prefix}");
        show.lines()
            .filter_map(|l| l.strip_prefix("Depends: "))
            .flat_map(|deps| deps.split(',').map(str::trim))
            .filter_map(|dep| dep.split_whitespace().next())
            .find(|name| name.starts_with(&want) && name.ends_with("-cloud-amd64"))
            .map(str::to_string)
            .with_context(|| format!("no {want}*-cloud-amd64 in the private APT lists"))
    }

    /// `apt-get download PACKAGE` into `target/vm/apt/debs/` (kept: a second fetch is a no-op).
    pub fn download(&self, package: &str) -> Result<PathBuf> {
        let debs = self.dir.join("debs");
        let find = || -> Result<Option<PathBuf>> {
            Ok(fs::read_dir(&debs)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with(&format!("{package}_")) && n.ends_with(".deb")
                    })
                }))
        };
        if let Some(deb) = find()? {
            return Ok(deb);
        }
        run(self
            .command("apt-get")
            .args(["download", "-qq", package])
            .current_dir(&debs))?;
        find()?.with_context(|| format!("apt-get download {package} left no .deb"))
    }
}

/// The URI (and keyring) the system already uses for Debian bookworm, so the private
/// configuration goes to the same mirror.
fn system_debian_mirror() -> Result<(String, String)> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let name = file.to_string_lossy();
        if name.ends_with(".sources") {
            // deb822: blank-line separated stanzas of `Key: value`.
            for stanza in text.split("\n\n") {
                let field = |key: &str| {
                    stanza.lines().find_map(|l| {
                        l.strip_prefix(key)
                            .and_then(|rest| rest.strip_prefix(':'))
                            .map(|v| v.trim().to_string())
                    })
                };
                let suites = field("Suites").unwrap_or_default();
                if suites.split_whitespace().any(|s| s == "bookworm") {
                    if let Some(uri) = field("URIs") {
                        let uri = uri
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string();
                        let key = field("Signed-By").unwrap_or_else(|| KEYRING.to_string());
                        return Ok((uri, key));
                    }
                }
            }
        } else if name.ends_with(".list") {
            for line in text.lines() {
                let words: Vec<&str> = line
                    .split_whitespace()
                    .filter(|w| !w.starts_with('[') && !w.ends_with(']'))
                    .collect();
                if let ["deb", uri, "bookworm", ..] = words[..] {
                    return Ok((uri.to_string(), KEYRING.to_string()));
                }
            }
        }
    }
    bail!("no Debian bookworm source in /etc/apt to take the mirror from")
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
