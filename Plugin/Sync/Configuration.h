#pragma once

#include "Sync/ConnectionString.h"
#include "Sync/OutboxItem.h"

#include <json/value.h>

#include <cstdint>
#include <memory>
#include <string>

namespace AzureDicom
{
enum class CredentialType
{
  None,
  ClientSecret,
  ClientCertificate,
  ManagedIdentity,
  WorkloadIdentity
};

const char* ToString(CredentialType type);


enum class ConflictPolicy
{
  Keep,
  Replace
};


struct RetrySettings
{
  double initialDelaySeconds = 2;
  double maxDelaySeconds = 600;
  unsigned int maxAttempts = 10;
};


struct TlsSettings
{
  bool verifyPeer = true;
  std::string caCertificates;  // a PEM bundle; empty means the system's store
  bool allowUnverifiedRemoteHosts = false;  // needed for verifyPeer false beyond loopback
};


struct CredentialSettings;


// Where the client secret, or the certificate, is read from instead of the configuration file.
struct KeyVaultSettings
{
  std::string vaultUrl;
  std::string secretName;
  std::string secretVersion;  // empty means the newest version, re-read on every refresh
  unsigned int refreshSeconds = 3600;
  std::shared_ptr<CredentialSettings> credentials;  // the vault's own credential
};


struct CredentialSettings
{
  CredentialType type = CredentialType::None;
  std::string tenantId;
  std::string clientId;
  std::string clientSecret;
  std::string certificatePath;
  std::string certificatePassword;
  std::string authorityHost = "https://login.microsoftonline.com";
  std::string scope = "https://dicom.healthcareapis.azure.com/.default";
  std::shared_ptr<KeyVaultSettings> keyVault;  // null when the secret is in the file
};


// The "AzureDicom" section of Orthanc's configuration, checked and with its defaults filled in.
struct Configuration
{
  bool enable = true;
  std::string serviceUrl;  // no trailing slash
  std::string apiVersion = "v2";  // "v1", "v2", or "" for a plain DICOMweb server
  std::string partition;
  std::string database;  // empty means a file in Orthanc's storage directory
  std::string nodeName;  // empty means <hostname>:<HttpPort>, which the plugin's entry point sets
  unsigned int workers = 4;
  unsigned int maxInstancesPerRequest = 20;
  unsigned int maxRequestSizeMB = 64;
  unsigned int requestTimeoutSeconds = 300;
  unsigned int leaseSeconds = 0;  // 0 until parsed, then > requestTimeoutSeconds (default + 60)
  RetrySettings retry;
  TlsSettings tls;
  bool mirrorDeletes = false;
  ConflictPolicy onConflict = ConflictPolicy::Keep;
  CredentialSettings credentials;

  uint64_t GetMaxRequestBytes() const
  {
    return static_cast<uint64_t>(maxRequestSizeMB) * 1024 * 1024;
  }

  Destination GetDestination() const;

  // The STOW-RS URL: {ServiceUrl}[/{ApiVersion}][/partitions/{Partition}]/studies
  std::string GetStowUrl() const;

  // The base of the DICOMweb routes, without "/studies".
  std::string GetDicomWebBase() const;
};


// Parses the "AzureDicom" section. A null or absent section gives a disabled configuration,
// and a null key counts as absent. Keys are case-sensitive. Numbers and booleans may also be
// strings ("4", "true"), because Orthanc's ${VAR} substitution only works inside strings.
// With "Enable": false, only unknown keys and wrong types are errors: nothing is required and
// no value, URL or file is checked. Throws Exception(BadConfiguration) naming the key
// ("AzureDicom.Retry.MaxAttempts") and the value that was expected, for an unknown key, a wrong
// type or an impossible value. The message never contains the value of ClientSecret or
// CertificatePassword, nor the user information of a URL.
Configuration ParseConfiguration(const Json::Value& section);

// Returns the effective settings as JSON with the keys of the configuration file, and every
// secret replaced by "<redacted>" (an empty secret stays empty). The secrets are ClientSecret,
// CertificatePassword and the password of a Database connection string. Credentials objects
// list only the keys that their Type takes, so that the result parses again.
Json::Value ToRedactedJson(const Configuration& configuration);

// Returns a warning naming ServiceUrl, AuthorityHost or VaultUrl when Tls.VerifyPeer is false
// for one that is not on loopback, or "" when the certificates are checked or all are local.
std::string GetUnverifiedTlsWarning(const Configuration& configuration);

// Returns true for the hosts where plain http:// is allowed: "localhost" (case-insensitive),
// 127.0.0.0/8, ::1 with or without brackets, and 127.0.0.0/8 as an IPv4-mapped IPv6 address.
bool IsLoopbackHost(const std::string& host);

// Returns the host part of an http:// or https:// URL, after any user information and without
// the brackets of an IPv6 address. Throws BadConfiguration for a malformed URL or port, with a
// message that starts with key (such as "AzureDicom.ServiceUrl").
std::string GetUrlHost(const std::string& url, const std::string& key);

}  // namespace AzureDicom
