# Sourced by scripts/guidance_*.sh: the classifier kind a guidance method reads (empty for cfg,
# which needs none): cbg a noisy classifier, nos / pplm a head on the generator, fudge a prefix one.
classifier_kind() {
  case "$1" in
    cbg) echo noisy ;;
    nos|pplm) echo head ;;
    fudge) echo prefix ;;
    *) echo ;;
  esac
}
