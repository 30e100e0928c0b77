"""`atelier keys`: the region master keys that protect client data at rest."""

from __future__ import annotations

import typer

from atelier.cli.common import RegionOption, console, out, progress_bar, regions_of
from atelier.errors import AtelierError
from atelier.protect.keys import LocalKeyStore, key_store
from atelier.settings import get_settings

app = typer.Typer(help="Master keys per region (local key store or Cloud KMS).", no_args_is_help=True)


@app.command("init")
def init(region: str = typer.Option("all", "--region", "-r", help="Region, or 'all'.")) -> None:
    """Create the local key store's master keys (outside the repository, mode 0600)."""
    s = get_settings()
    if s.kms != "local":
        raise AtelierError("Cloud KMS keys are created by Terraform", fix="see terraform/modules/region (google_kms_crypto_key)")
    for r in regions_of(region):
        created = LocalKeyStore.init(s.paths.keys, r)
        out.print(f"{r}: {'created' if created else 'exists'}  {s.paths.keys / (r + '.json')}")


@app.command("rotate")
def rotate(region: str = RegionOption) -> None:
    """Make a new master key version primary and re-wrap every dataset's keys under it.

    Data files are not rewritten: only the small key-material files beside them change. The old
    version is destroyed once every dataset of the region is re-wrapped.
    """
    from atelier.protect.rotation import rotate_region

    s = get_settings()
    for r in regions_of(region):
        with progress_bar(f"{r}: re-wrapping keys") as advance:
            result = rotate_region(s, r, progress=advance)
        out.print(f"{r}: new primary {result['version']}; {result['files']} files re-wrapped; retired {', '.join(result['retired']) or 'nothing'}")


@app.command("status")
def status(region: str = typer.Option("all", "--region", "-r")) -> None:
    """Show master key versions per region."""
    s = get_settings()
    for r in regions_of(region):
        store = key_store(s, r)
        versions = store.versions() if isinstance(store, LocalKeyStore) else {"(Cloud KMS)": "see gcloud kms keys versions list"}
        out.print(f"{r}: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    console.print()
