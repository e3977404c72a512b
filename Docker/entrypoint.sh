#!/usr/bin/env bash
# Writes Orthanc's configuration from environment variables into a folder of JSON files, then
# runs Orthanc on that folder. Docker/README.md lists the variables. Arguments are passed to
# Orthanc before the folder (for example --verbose).
#
# Secrets (the passwords of ORTHANC_USERS_FILE, the client secret, the certificate password)
# never reach the folder: the files contain ${VARIABLE} references, and this script exports the
# variables, which Orthanc replaces when it reads its configuration. Orthanc substitutes the
# raw text before it parses the JSON, so every value that this script writes or exports is
# escaped for a JSON string.
#
# The functions return their results in variables named by their first argument instead of on
# standard output, because a failure inside $(...) would not stop the script everywhere (in a
# here-document or an export, for example).
set -euo pipefail

program=orthanc-azure-entrypoint
marker=.orthanc-azure-entrypoint

config_dir=${ORTHANC_CONFIG_DIR:-/etc/orthanc-azure}
storage_dir=${ORTHANC_STORAGE_DIR:-/var/lib/orthanc/db}
orthanc_binary=${ORTHANC_BINARY:-/usr/sbin/Orthanc}
mirror_plugin=/usr/share/orthanc/plugins/libOrthancAzureDicom.so
dicomweb_plugin=${ORTHANC_DICOMWEB_PLUGIN:-/usr/share/orthanc/plugins/libOrthancDicomWeb.so}
plugin_list=${ORTHANC_PLUGINS-$mirror_plugin}
users_file=${ORTHANC_USERS_FILE:-/run/secrets/orthanc-users}
ca_bundle=/etc/ssl/certs/ca-certificates.crt
credential_types="None, ClientSecret, ClientCertificate, ManagedIdentity, WorkloadIdentity"
max_port=65535

fail() {
  echo "$program: error: $*" >&2
  exit 1
}

warn() {
  echo "$program: warning: $*" >&2
}

# Sets $1 to the text $3 escaped for the inside of a JSON string. Control characters other than
# tab, line feed and carriage return are rejected. The message names $2 and never shows the
# value, which may be a secret.
escape_json() {
  local -n __escaped=$1
  local text=$3
  text=${text//\\/\\\\}
  text=${text//\"/\\\"}
  text=${text//$'\t'/\\t}
  text=${text//$'\n'/\\n}
  text=${text//$'\r'/\\r}
  if [[ $text =~ [[:cntrl:]] ]]; then
    fail "$2 contains a control character; remove it"
  fi
  __escaped=$text
}

# Sets $1 to the text $3 as a JSON string, with quotes.
quote_json() {
  local -n __quoted=$1
  local inner
  escape_json inner "$2" "$3"
  __quoted="\"$inner\""
}

# Sets $1 to true or false from the variable named $2, or from $3 when it is unset or empty.
read_bool() {
  local -n __boolean=$1
  local value=${!2:-$3}
  case "${value,,}" in
    true | yes | 1) __boolean=true ;;
    false | no | 0) __boolean=false ;;
    *) fail "$2 is \"$value\"; expected true or false" ;;
  esac
}

# Sets $1 to the port in the variable named $2, or $3 when it is unset or empty. Orthanc's own
# settings take JSON numbers only, unlike the plugin's, which also take strings.
read_port() {
  local -n __port=$1
  local value=${!2:-$3}
  if ! [[ $value =~ ^[0-9]{1,5}$ ]] || ((10#$value < 1 || 10#$value > max_port)); then
    fail "$2 is \"$value\"; expected a TCP port from 1 to $max_port"
  fi
  __port=$((10#$value))
}

# Exports the secret, escaped for JSON, as the variable $1 that the configuration names. The
# value comes from the file that ${1}_FILE names (without its final line breaks), or from the
# variable $1 itself. Returns 1 when neither is set.
export_secret() {
  local variable=$1 file_variable="${1}_FILE" file secret escaped
  file=${!file_variable:-}
  if [ -n "$file" ] && [ -n "${!variable:-}" ]; then
    fail "both $variable and $file_variable are set; set only one (preferably the file)"
  fi

  if [ -n "$file" ]; then
    if [ ! -f "$file" ] || [ ! -r "$file" ]; then
      fail "$file_variable: cannot read the file \"$file\"; check that it exists and that user" \
        "$(id -un) (uid $(id -u)) can read it"
    fi
    # Bash drops NUL bytes from a command substitution with only a warning, which would change
    # the secret: such a file is rejected instead.
    if [ "$(tr -d '\000' <"$file" | wc -c)" != "$(wc -c <"$file")" ]; then
      fail "$file_variable: the file \"$file\" contains a NUL byte; expected the secret as text"
    fi
    secret=$(<"$file")
    # A file written on Windows ends in CR LF: the final CR is not part of the secret.
    secret=${secret%$'\r'}
    [ -n "$secret" ] || fail "$file_variable: the file \"$file\" is empty; expected the secret"
  elif [ -n "${!variable:-}" ]; then
    secret=${!variable}
  else
    return 1
  fi

  escape_json escaped "$variable" "$secret"
  export "$variable=$escaped"
}

# Claims the configuration folder, or stops when it contains files that this script did not
# write, so that a wrong ORTHANC_CONFIG_DIR (such as /etc/orthanc) is never emptied.
prepare_config_dir() {
  mkdir -p "$config_dir" || fail "ORTHANC_CONFIG_DIR: cannot create \"$config_dir\""
  if [ -n "$(ls -A "$config_dir")" ] && [ ! -f "$config_dir/$marker" ]; then
    fail "ORTHANC_CONFIG_DIR: \"$config_dir\" contains files that this script did not write;" \
      "choose an empty folder"
  fi
  [ -w "$config_dir" ] || fail "ORTHANC_CONFIG_DIR: user $(id -un) cannot write to \"$config_dir\""
  find "$config_dir" -mindepth 1 -maxdepth 1 -name '*.json' -delete
  touch "$config_dir/$marker"
}

prepare_storage_dir() {
  mkdir -p "$storage_dir" || fail "ORTHANC_STORAGE_DIR: cannot create \"$storage_dir\""
  if [ ! -w "$storage_dir" ]; then
    fail "ORTHANC_STORAGE_DIR: user $(id -un) (uid $(id -u)) cannot write to \"$storage_dir\";" \
      "give that user the volume or the bind-mounted folder"
  fi
}

# Members of the JSON object being built, one "Key": value each, by add_string and add_raw.
members=()

# Adds "key": "value of the variable $2", when that variable is set and not empty.
add_string() {
  local key=$1 variable=$2 quoted
  if [ -n "${!variable:-}" ]; then
    quote_json quoted "$variable" "${!variable}"
    members+=("\"$key\": $quoted")
  fi
}

add_raw() {
  members+=("\"$1\": $2")
}

# Sets $1 to the collected members as a JSON object whose closing brace is indented by $2
# spaces, and clears the members.
flush_object() {
  local -n __object=$1
  local pad index last=$((${#members[@]} - 1))
  printf -v pad '%*s' "$2" ""
  __object="{"$'\n'
  for index in "${!members[@]}"; do
    __object+="$pad  ${members[$index]}"
    if [ "$index" -lt "$last" ]; then
      __object+=","
    fi
    __object+=$'\n'
  done
  __object+="$pad}"
  members=()
}

# Sets $1 to the JSON array of the plugins to load: ORTHANC_PLUGINS (paths separated by ':')
# and the DICOMweb plugin when $2 is true.
make_plugins_json() {
  local -n __array=$1
  local dicomweb=$2 paths=() path quoted separator=""
  IFS=: read -ra paths <<<"$plugin_list"
  if [ "$dicomweb" = true ]; then
    if [ ! -e "$dicomweb_plugin" ]; then
      fail "ORTHANC_DICOMWEB is true but \"$dicomweb_plugin\" does not exist; build the image" \
        "with --build-arg WITH_DICOMWEB=true, or set ORTHANC_DICOMWEB_PLUGIN"
    fi
    paths+=("$dicomweb_plugin")
  fi

  __array="["
  for path in "${paths[@]}"; do
    [ -n "$path" ] || continue
    [ -e "$path" ] || fail "ORTHANC_PLUGINS: the plugin \"$path\" does not exist"
    quote_json quoted ORTHANC_PLUGINS "$path"
    __array+="$separator$quoted"
    separator=", "
  done
  __array+="]"
}

write_orthanc_json() {
  local authentication=$1 remote_access=$2 dicomweb=$3
  local http_port dicom_port dicom_server value plugins object
  read_port http_port ORTHANC_HTTP_PORT 8042
  read_port dicom_port ORTHANC_DICOM_PORT 4242
  read_bool dicom_server ORTHANC_DICOM_SERVER true
  make_plugins_json plugins "$dicomweb"

  quote_json value ORTHANC_NAME "${ORTHANC_NAME:-Orthanc}"
  add_raw Name "$value"
  quote_json value ORTHANC_STORAGE_DIR "$storage_dir"
  add_raw StorageDirectory "$value"
  add_raw IndexDirectory "$value"
  add_raw HttpPort "$http_port"
  add_raw DicomServerEnabled "$dicom_server"
  add_raw DicomPort "$dicom_port"
  quote_json value ORTHANC_DICOM_AET "${ORTHANC_DICOM_AET:-ORTHANC}"
  add_raw DicomAet "$value"
  add_raw RemoteAccessAllowed "$remote_access"
  add_raw AuthenticationEnabled "$authentication"
  # Orthanc's own HTTP client (not the plugin's) otherwise looks for the bundle next to its
  # configuration.
  if [ -f "$ca_bundle" ]; then
    add_raw HttpsCACertificates "\"$ca_bundle\""
  fi
  add_raw Plugins "$plugins"
  flush_object object 0
  printf '%s\n' "$object" >"$config_dir/orthanc.json"
}

# Writes RegisteredUsers from ORTHANC_USERS_FILE, one "user:password" a line ('#' starts a
# comment line). The password of line N goes to Orthanc in ORTHANC_USER_PASSWORD_N.
write_users_json() {
  local line user password escaped quoted number=0 users object
  if [ ! -f "$users_file" ] || [ ! -r "$users_file" ]; then
    fail "ORTHANC_USERS_FILE: cannot read \"$users_file\", which ORTHANC_AUTHENTICATION=true" \
      "needs; check that it exists and that user $(id -un) (uid $(id -u)) can read it"
  fi

  while IFS= read -r line || [ -n "$line" ]; do
    number=$((number + 1))
    line=${line%$'\r'}
    if [ -z "$line" ] || [ "${line:0:1}" = "#" ]; then
      continue
    fi
    user=${line%%:*}
    password=${line#*:}
    if [ "$user" = "$line" ] || [ -z "$user" ] || [ -z "$password" ]; then
      fail "ORTHANC_USERS_FILE: line $number of \"$users_file\" is not \"user:password\""
    fi
    escape_json escaped "the password of line $number of ORTHANC_USERS_FILE" "$password"
    export "ORTHANC_USER_PASSWORD_$number=$escaped"
    quote_json quoted "the user of line $number of ORTHANC_USERS_FILE" "$user"
    members+=("$quoted: \"\${ORTHANC_USER_PASSWORD_$number}\"")
  done <"$users_file"

  [ ${#members[@]} -gt 0 ] || fail "ORTHANC_USERS_FILE: \"$users_file\" lists no user"
  flush_object users 2
  add_raw RegisteredUsers "$users"
  flush_object object 0
  printf '%s\n' "$object" >"$config_dir/users.json"
}

write_dicomweb_json() {
  local dicomweb object
  add_raw Enable true
  add_raw Root '"/dicom-web/"'
  flush_object dicomweb 2
  add_raw DicomWeb "$dicomweb"
  flush_object object 0
  printf '%s\n' "$object" >"$config_dir/dicomweb.json"
}

# Sets $1 to the KeyVault object, whose own credential is a managed identity unless
# AZURE_DICOM_KEY_VAULT_CREDENTIALS_TYPE is WorkloadIdentity.
make_key_vault_json() {
  local -n __key_vault=$1
  local vault_type=${AZURE_DICOM_KEY_VAULT_CREDENTIALS_TYPE:-ManagedIdentity} credentials
  case "$vault_type" in
    ManagedIdentity) ;;
    WorkloadIdentity)
      [ -z "${AZURE_DICOM_KEY_VAULT_CLIENT_ID:-}" ] ||
        fail "AZURE_DICOM_KEY_VAULT_CLIENT_ID is for ManagedIdentity; a workload identity" \
          "takes AZURE_CLIENT_ID"
      ;;
    *)
      fail "AZURE_DICOM_KEY_VAULT_CREDENTIALS_TYPE is \"$vault_type\"; expected" \
        "ManagedIdentity or WorkloadIdentity"
      ;;
  esac
  [ -n "${AZURE_DICOM_KEY_VAULT_SECRET_NAME:-}" ] ||
    fail "AZURE_DICOM_KEY_VAULT_URL is set but AZURE_DICOM_KEY_VAULT_SECRET_NAME is not;" \
      "expected the name of the secret or certificate in the vault"

  add_raw Type "\"$vault_type\""
  add_string ClientId AZURE_DICOM_KEY_VAULT_CLIENT_ID
  flush_object credentials 8

  add_string VaultUrl AZURE_DICOM_KEY_VAULT_URL
  add_string SecretName AZURE_DICOM_KEY_VAULT_SECRET_NAME
  add_string SecretVersion AZURE_DICOM_KEY_VAULT_SECRET_VERSION
  add_string RefreshSeconds AZURE_DICOM_KEY_VAULT_REFRESH_SECONDS
  add_raw Credentials "$credentials"
  flush_object __key_vault 6
}

# Sets $1 to the Credentials object of type $2. Keys that the type does not take are left out
# even when their variables are set, because the AKS workload identity webhook sets AZURE_TENANT_ID
# in pods and the plugin rejects a TenantId with a managed identity.
make_credentials_json() {
  local -n __credentials=$1
  local type=$2 key_vault=""
  if [ -n "${AZURE_DICOM_KEY_VAULT_URL:-}" ]; then
    case "$type" in
      ClientSecret | ClientCertificate) make_key_vault_json key_vault ;;
      *)
        fail "AZURE_DICOM_KEY_VAULT_URL is set, but only ClientSecret and ClientCertificate" \
          "read Key Vault, not AZURE_DICOM_CREDENTIALS_TYPE=$type"
        ;;
    esac
  fi

  add_raw Type "\"$type\""
  case "$type" in
    ClientSecret | ClientCertificate)
      add_string TenantId AZURE_TENANT_ID
      add_string ClientId AZURE_CLIENT_ID
      add_string AuthorityHost AZURE_AUTHORITY_HOST
      ;;
    ManagedIdentity)
      add_string ClientId AZURE_CLIENT_ID
      ;;
  esac
  # A workload identity reads AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_AUTHORITY_HOST and
  # AZURE_FEDERATED_TOKEN_FILE itself, where the AKS webhook sets them.
  if [ "$type" != None ]; then
    add_string Scope AZURE_DICOM_SCOPE
  fi

  if [ "$type" = ClientSecret ] && [ -z "$key_vault" ]; then
    export_secret AZURE_DICOM_CLIENT_SECRET ||
      fail "AZURE_DICOM_CREDENTIALS_TYPE=ClientSecret needs AZURE_DICOM_CLIENT_SECRET_FILE" \
        "(or AZURE_DICOM_KEY_VAULT_URL and AZURE_DICOM_KEY_VAULT_SECRET_NAME)"
    # shellcheck disable=SC2016  # Orthanc, not this shell, replaces the reference
    add_raw ClientSecret '"${AZURE_DICOM_CLIENT_SECRET}"'
  fi
  if [ "$type" = ClientCertificate ] && [ -z "$key_vault" ]; then
    [ -n "${AZURE_DICOM_CERTIFICATE_FILE:-}" ] ||
      fail "AZURE_DICOM_CREDENTIALS_TYPE=ClientCertificate needs AZURE_DICOM_CERTIFICATE_FILE" \
        "(or AZURE_DICOM_KEY_VAULT_URL and AZURE_DICOM_KEY_VAULT_SECRET_NAME)"
    add_string CertificatePath AZURE_DICOM_CERTIFICATE_FILE
    if export_secret AZURE_DICOM_CERTIFICATE_PASSWORD; then
      # shellcheck disable=SC2016  # Orthanc, not this shell, replaces the reference
      add_raw CertificatePassword '"${AZURE_DICOM_CERTIFICATE_PASSWORD}"'
    fi
  fi
  if [ -n "$key_vault" ]; then
    add_raw KeyVault "$key_vault"
  fi
  flush_object __credentials 4
}

write_azure_dicom_json() {
  local enable type value retry="" tls="" credentials section object
  read_bool enable AZURE_DICOM_ENABLE true
  if [ "$enable" = false ]; then
    add_raw Enable false
    flush_object section 2
    add_raw AzureDicom "$section"
    flush_object object 0
    printf '%s\n' "$object" >"$config_dir/azure-dicom.json"
    return
  fi

  [ -n "${AZURE_DICOM_SERVICE_URL:-}" ] ||
    fail "AZURE_DICOM_SERVICE_URL is not set; expected the DICOM service's URL, such as" \
      "https://myworkspace-mydicom.dicom.azurehealthcareapis.com"
  type=${AZURE_DICOM_CREDENTIALS_TYPE:-}
  case "$type" in
    None | ClientSecret | ClientCertificate | ManagedIdentity | WorkloadIdentity) ;;
    "") fail "AZURE_DICOM_CREDENTIALS_TYPE is not set; expected one of $credential_types" ;;
    *) fail "AZURE_DICOM_CREDENTIALS_TYPE is \"$type\"; expected one of $credential_types" ;;
  esac
  make_credentials_json credentials "$type"

  add_string InitialDelaySeconds AZURE_DICOM_RETRY_INITIAL_DELAY_SECONDS
  add_string MaxDelaySeconds AZURE_DICOM_RETRY_MAX_DELAY_SECONDS
  add_string MaxAttempts AZURE_DICOM_RETRY_MAX_ATTEMPTS
  if [ ${#members[@]} -gt 0 ]; then
    flush_object retry 4
  fi
  add_string VerifyPeer AZURE_DICOM_TLS_VERIFY_PEER
  add_string CaCertificates AZURE_DICOM_CA_CERTIFICATES
  add_string AllowUnverifiedRemoteHosts AZURE_DICOM_TLS_ALLOW_UNVERIFIED_REMOTE_HOSTS
  if [ ${#members[@]} -gt 0 ]; then
    flush_object tls 4
  fi

  add_raw Enable true
  add_string ServiceUrl AZURE_DICOM_SERVICE_URL
  # An empty AZURE_DICOM_API_VERSION is kept, because it selects a plain DICOMweb server.
  quote_json value AZURE_DICOM_API_VERSION "${AZURE_DICOM_API_VERSION-v2}"
  add_raw ApiVersion "$value"
  add_string Partition AZURE_DICOM_PARTITION
  add_string Database AZURE_DICOM_DATABASE
  add_string Workers AZURE_DICOM_WORKERS
  add_string MaxInstancesPerRequest AZURE_DICOM_MAX_INSTANCES_PER_REQUEST
  add_string MaxRequestSizeMB AZURE_DICOM_MAX_REQUEST_SIZE_MB
  add_string RequestTimeoutSeconds AZURE_DICOM_REQUEST_TIMEOUT_SECONDS
  add_string LeaseSeconds AZURE_DICOM_LEASE_SECONDS
  [ -z "$retry" ] || add_raw Retry "$retry"
  [ -z "$tls" ] || add_raw Tls "$tls"
  add_raw Credentials "$credentials"
  flush_object section 2
  add_raw AzureDicom "$section"
  flush_object object 0
  printf '%s\n' "$object" >"$config_dir/azure-dicom.json"
}

# Links the *.json files of ORTHANC_EXTRA_CONFIG_DIR into the folder, as extra-NAME.json.
# Orthanc stops at start-up when two files define the same top-level key, so these files must
# not repeat the keys written here.
link_extra_files() {
  local extra_dir=${ORTHANC_EXTRA_CONFIG_DIR:-} file absolute
  [ -n "$extra_dir" ] || return 0
  [ -d "$extra_dir" ] || fail "ORTHANC_EXTRA_CONFIG_DIR: \"$extra_dir\" is not a folder"
  absolute=$(cd "$extra_dir" && pwd)
  for file in "$absolute"/*.json; do
    [ -e "$file" ] || continue
    ln -sf "$file" "$config_dir/extra-$(basename "$file")"
  done
}

main() {
  local authentication remote_access dicomweb
  read_bool authentication ORTHANC_AUTHENTICATION true
  read_bool remote_access ORTHANC_REMOTE_ACCESS_ALLOWED true
  read_bool dicomweb ORTHANC_DICOMWEB false
  [ -x "$orthanc_binary" ] || fail "ORTHANC_BINARY: \"$orthanc_binary\" is not an executable"
  if [ "$authentication" = false ] && [ "$remote_access" = true ]; then
    warn "ORTHANC_AUTHENTICATION is false and ORTHANC_REMOTE_ACCESS_ALLOWED is true: anyone" \
      "who reaches the HTTP port can use Orthanc's REST API"
  fi

  umask 027
  prepare_config_dir
  prepare_storage_dir
  write_orthanc_json "$authentication" "$remote_access" "$dicomweb"
  if [ "$authentication" = true ]; then
    write_users_json
  fi
  if [ "$dicomweb" = true ]; then
    write_dicomweb_json
  fi
  write_azure_dicom_json
  link_extra_files

  echo "$program: configuration written to $config_dir; starting $orthanc_binary" >&2
  exec "$orthanc_binary" "$@" "$config_dir/"
}

main "$@"
