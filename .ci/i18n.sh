#!/usr/bin/env bash
# Translations of ephemeral_auth (ephemeral_auth/locale/<lang>/LC_MESSAGES/django.po and .mo).
#
#   bash .ci/i18n.sh check    # (CI, lint stage) every marked string translated in every catalog, no fuzzy
#                             # entry, and every .mo compiled from its .po as committed
#   bash .ci/i18n.sh update   # after changing marked strings: merge them into every catalog, then compile
#
# Needs GNU gettext (msgfmt, msgcmp, msgattrib, xgettext): installed with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LANGS="de es fr it nl pt_BR"
DJANGO_ADMIN="$ROOT/.venv/bin/django-admin"
LOCALE=ephemeral_auth/locale

say() { echo "i18n: $*"; }

if ! command -v msgfmt >/dev/null || ! command -v msgcmp >/dev/null; then
  say "installing gettext (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq gettext >/dev/null
fi

makemessages() {  # makemessages DIR LANG...: run in the app folder DIR (no settings needed)
  local dir=$1; shift
  local args=()
  for lang in "$@"; do args+=(-l "$lang"); done
  (cd "$dir" && DJANGO_SETTINGS_MODULE="" "$DJANGO_ADMIN" makemessages "${args[@]}" \
    --no-location --no-obsolete --no-wrap -e html,txt,py >/dev/null)
}

case "${1:-check}" in
  update)
    mkdir -p "$LOCALE"
    # shellcheck disable=SC2086
    makemessages ephemeral_auth $LANGS
    for lang in $LANGS; do
      msgfmt --check-format --check-domain -o "$LOCALE/$lang/LC_MESSAGES/django.mo" "$LOCALE/$lang/LC_MESSAGES/django.po"
    done
    say "catalogs merged and compiled: $LANGS"
    ;;
  check)
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # The strings marked today: a template catalog made from a copy of the package.
    cp -r ephemeral_auth "$work/ephemeral_auth"
    rm -rf "$work/ephemeral_auth/locale"
    mkdir -p "$work/ephemeral_auth/locale"
    makemessages "$work/ephemeral_auth" en
    template="$work/ephemeral_auth/locale/en/LC_MESSAGES/django.po"
    marked=$(grep -c '^msgid "' "$template")
    failed=0
    for lang in $LANGS; do
      po="$LOCALE/$lang/LC_MESSAGES/django.po"
      mo="$LOCALE/$lang/LC_MESSAGES/django.mo"
      if [ ! -f "$po" ] || [ ! -f "$mo" ]; then
        say "$lang: $po or its .mo is missing (bash .ci/i18n.sh update)"; failed=1; continue
      fi
      # Every marked string is in the catalog...
      if ! msgcmp --use-untranslated "$po" "$template" 2>"$work/cmp.txt"; then
        say "$lang: marked strings missing from $po:"; head -n 20 "$work/cmp.txt"; failed=1
      fi
      # ... with a real header (a fuzzy header is left out of the .mo: no plural forms) ...
      if sed -n '1,/^msgid ""/p' "$po" | grep -q '^#, fuzzy'; then
        say "$lang: the header entry of $po is marked fuzzy"; failed=1
      fi
      # ... translated, not fuzzy ...
      untranslated=$(msgattrib --untranslated --no-obsolete "$po" | grep -c '^msgid "' || true)
      fuzzy=$(msgattrib --only-fuzzy --no-obsolete "$po" | grep -c '^msgid "' || true)
      # (the header entry msgid "" counts once in each listing that is not empty)
      [ "$untranslated" -gt 0 ] && untranslated=$((untranslated - 1))
      [ "$fuzzy" -gt 0 ] && fuzzy=$((fuzzy - 1))
      if [ "$untranslated" -ne 0 ] || [ "$fuzzy" -ne 0 ]; then
        say "$lang: $untranslated untranslated and $fuzzy fuzzy strings in $po"; failed=1
      fi
      # ... and the committed .mo is the compiled .po.
      msgfmt --check-format --check-domain -o "$work/$lang.mo" "$po"
      if ! cmp -s "$work/$lang.mo" "$mo"; then
        say "$lang: $mo is not compiled from $po (bash .ci/i18n.sh update)"; failed=1
      fi
      translated=$(msgattrib --translated --no-fuzzy --no-obsolete "$po" | grep -c '^msgid "' || true)
      say "$lang: $((translated > 0 ? translated - 1 : 0)) of $((marked - 1)) marked strings translated"
    done
    exit "$failed"
    ;;
  *) echo "usage: $0 check|update" >&2; exit 2 ;;
esac
