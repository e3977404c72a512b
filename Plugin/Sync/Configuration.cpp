#include "Sync/Configuration.h"

#include "Common/Exception.h"
#include "Common/Json.h"

#include <arpa/inet.h>
#include <json/writer.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <system_error>
#include <vector>

namespace AzureDicom
{
namespace
{
using KeyList = std::vector<const char*>;

const char* const kSectionName = "AzureDicom";
const char* const kRedacted = "<redacted>";
const char* const kKeyVaultScope = "https://vault.azure.net/.default";
const char* const kPemCertificateMarker = "-----BEGIN CERTIFICATE-----";
const char* const kServiceUrlExample = "https://myworkspace-mydicom.dicom.azurehealthcareapis.com";
const char* const kVaultUrlExample = "https://myvault.vault.azure.net";
const char* const kCredentialTypes =
    "one of None, ClientSecret, ClientCertificate, ManagedIdentity, WorkloadIdentity";

const KeyList kTopLevelKeys = {"Enable",
                               "ServiceUrl",
                               "ApiVersion",
                               "Partition",
                               "Database",
                               "NodeName",
                               "Workers",
                               "MaxInstancesPerRequest",
                               "MaxRequestSizeMB",
                               "RequestTimeoutSeconds",
                               "LeaseSeconds",
                               "Retry",
                               "Tls",
                               "MirrorDeletes",
                               "OnConflict",
                               "Credentials"};
const KeyList kRetryKeys = {"InitialDelaySeconds", "MaxDelaySeconds", "MaxAttempts"};
const KeyList kTlsKeys = {"VerifyPeer", "CaCertificates", "AllowUnverifiedRemoteHosts"};
const KeyList kCredentialKeys = {"Type",          "TenantId",        "ClientId",
                                 "ClientSecret",  "CertificatePath", "CertificatePassword",
                                 "AuthorityHost", "Scope",           "KeyVault"};
const KeyList kKeyVaultKeys = {"VaultUrl", "SecretName", "SecretVersion", "RefreshSeconds",
                               "Credentials"};

struct IntegerRange
{
  int64_t min;
  int64_t max;
};

constexpr IntegerRange kWorkersRange{1, 64};
constexpr IntegerRange kMaxInstancesPerRequestRange{1, 1000};
constexpr IntegerRange kMaxRequestSizeMBRange{1, 2048};
constexpr IntegerRange kRequestTimeoutSecondsRange{1, 86400};
constexpr IntegerRange kMaxAttemptsRange{1, 1000};
constexpr IntegerRange kRefreshSecondsRange{10, 604800};

// The default lease outlives the longest request by this margin, so that a worker still waiting
// for the response keeps its claim.
constexpr int64_t kLeaseMarginSeconds = 60;

// One week. Items claimed by a node that died wait at most this long before another node sends
// them.
constexpr int64_t kMaxLeaseSeconds = 604800;

// One day. A longer backoff would look like a hang to the administrator.
constexpr double kMaxRetryDelaySeconds = 86400;

// Below 10 ms, the first retries of a failing service would come more than 100 times a second
// before the backoff grows.
constexpr double kMinRetryDelaySeconds = 0.01;

constexpr size_t kMaxPartitionLength = 64;
constexpr size_t kMaxNodeNameLength = 128;
constexpr size_t kMaxSecretNameLength = 127;
constexpr size_t kSecretVersionLength = 32;
constexpr size_t kMaxDomainNameLength = 253;
constexpr size_t kMaxShownValueLength = 80;
constexpr int64_t kMaxPort = 65535;
constexpr size_t kMaxPortDigits = 5;
constexpr int kNumberPrecision = 15;


[[noreturn]] void Fail(const std::string& key, const std::string& problem,
                       const std::string& expected)
{
  throw Exception(ErrorCode::BadConfiguration, key + ": " + problem + "; expected " + expected);
}


// Formats a value as compact JSON for a message, cut to a length that fits one log line.
std::string Describe(const Json::Value& value)
{
  Json::StreamWriterBuilder builder;
  builder["indentation"] = "";
  builder["emitUTF8"] = true;
  builder["precision"] = kNumberPrecision;
  std::string text = Json::writeString(builder, value);

  if (text.size() > kMaxShownValueLength)
  {
    text = text.substr(0, kMaxShownValueLength) + "...";
  }
  return text;
}


std::string Quote(const std::string& text)
{
  return Describe(Json::Value(text));
}


std::string FormatNumber(double number)
{
  std::ostringstream stream;
  stream.imbue(std::locale::classic());
  stream << number;
  return stream.str();
}


const char* GetJsonTypeName(const Json::Value& value)
{
  switch (value.type())
  {
    case Json::nullValue:
      return "null";
    case Json::intValue:
    case Json::uintValue:
    case Json::realValue:
      return "a number";
    case Json::stringValue:
      return "a string";
    case Json::booleanValue:
      return "a boolean";
    case Json::arrayValue:
      return "an array";
    default:
      return "an object";
  }
}


// For a key that contains a secret, or an object that can contain one, the message shows the JSON
// type only, so that the value never reaches a log.
[[noreturn]] void FailType(const std::string& key, const Json::Value& value,
                           const std::string& expected, bool isSecret = false)
{
  if (isSecret)
  {
    Fail(key,
         std::string("invalid value (") + GetJsonTypeName(value) +
             ", not shown because the key can contain a secret)",
         expected);
  }
  Fail(key, "invalid value " + Describe(value) + " (" + GetJsonTypeName(value) + ")", expected);
}


std::string JoinKeys(const KeyList& keys)
{
  std::string joined;
  for (const char* key : keys)
  {
    joined += (joined.empty() ? "" : ", ") + std::string(key);
  }
  return joined;
}


std::string ToLower(std::string text)
{
  for (char& c : text)
  {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return text;
}


bool IsAsciiAlphanumeric(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}


bool IsHexDigit(char c)
{
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}


// True when text is not empty, at most maxLength long, and every character is alphanumeric or
// one of extraCharacters.
bool IsToken(const std::string& text, size_t maxLength, const std::string& extraCharacters)
{
  if (text.empty() || text.size() > maxLength)
  {
    return false;
  }

  for (char c : text)
  {
    if (!IsAsciiAlphanumeric(c) && extraCharacters.find(c) == std::string::npos)
    {
      return false;
    }
  }
  return true;
}


// Parses an integer from a JSON number or from a string such as "4", which is what Orthanc's
// ${VAR} substitution produces. Values beyond int64_t saturate, so that the range check
// still rejects them. Returns nothing for anything that is not an integer.
std::optional<int64_t> ToInteger(const Json::Value& value)
{
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

  switch (value.type())
  {
    case Json::intValue:
      return value.asInt64();
    case Json::uintValue:
      return value.asUInt64() > static_cast<uint64_t>(kMax) ? kMax : value.asInt64();
    case Json::realValue:
    {
      const double number = value.asDouble();
      if (!std::isfinite(number) || std::floor(number) != number)
      {
        return std::nullopt;
      }
      if (number <= static_cast<double>(kMin))
      {
        return kMin;
      }
      return number >= static_cast<double>(kMax) ? kMax : static_cast<int64_t>(number);
    }
    case Json::stringValue:
    {
      const std::string text = value.asString();
      int64_t number = 0;
      const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
      if (error == std::errc::result_out_of_range && end == text.data() + text.size())
      {
        return text[0] == '-' ? kMin : kMax;
      }
      if (error != std::errc() || end != text.data() + text.size())
      {
        return std::nullopt;
      }
      return number;
    }
    default:
      return std::nullopt;
  }
}


// Like ToInteger, for numbers that may have a fraction. Rejects infinity and NaN.
std::optional<double> ToNumber(const Json::Value& value)
{
  if (value.type() == Json::intValue || value.type() == Json::uintValue ||
      value.type() == Json::realValue)
  {
    return value.asDouble();
  }

  if (value.type() != Json::stringValue)
  {
    return std::nullopt;
  }

  const std::string text = value.asString();
  double number = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (error != std::errc() || end != text.data() + text.size() || !std::isfinite(number))
  {
    return std::nullopt;
  }
  return number;
}


unsigned int ToUnsigned(int64_t number)
{
  // Only a disabled configuration, whose values are not range-checked, gets here out of range.
  constexpr int64_t kMax = std::numeric_limits<unsigned int>::max();
  return static_cast<unsigned int>(number < 0 ? 0 : (number > kMax ? kMax : number));
}


// Reads one JSON object of the configuration. Keys are matched exactly, as Orthanc does, and an
// unknown key is an error, so that a misspelled key cannot silently fall back to its default.
// A null value counts as an absent key. When value checks are off (a disabled configuration),
// only the keys and the types are checked.
class ObjectReader
{
public:
  ObjectReader(const Json::Value& object, const std::string& path, const KeyList& allowedKeys,
               bool checkValues)
      : object_(object), path_(path), checkValues_(checkValues)
  {
    if (!object_.isObject())
    {
      FailType(path_, object_, "an object with the keys " + JoinKeys(allowedKeys),
               CanContainSecret(allowedKeys));
    }

    for (const std::string& name : object_.getMemberNames())
    {
      CheckKeyIsAllowed(name, allowedKeys);
    }
  }

  std::string PathOf(const char* key) const
  {
    return path_ + "." + key;
  }

  bool IsCheckingValues() const
  {
    return checkValues_;
  }

  void SetCheckingValues(bool checkValues)
  {
    checkValues_ = checkValues;
  }

  bool Has(const char* key) const
  {
    return object_.isMember(key) && !object_[key].isNull();
  }

  std::string GetString(const char* key, const std::string& defaultValue,
                        bool isSecret = false) const
  {
    if (!Has(key))
    {
      return defaultValue;
    }

    const Json::Value& value = object_[key];
    if (!value.isString())
    {
      FailType(PathOf(key), value, "a string", isSecret);
    }
    return value.asString();
  }

  bool GetBool(const char* key, bool defaultValue) const
  {
    if (!Has(key))
    {
      return defaultValue;
    }

    const Json::Value& value = object_[key];
    bool result = false;
    if (ReadBoolean(value, result))
    {
      return result;
    }
    FailType(PathOf(key), value, "true or false");
  }

  // rangeReason, when not empty, is appended to the expected range in the message.
  int64_t GetInteger(const char* key, int64_t defaultValue, const IntegerRange& range,
                     const std::string& rangeReason = "") const
  {
    if (!Has(key))
    {
      return defaultValue;
    }

    const Json::Value& value = object_[key];
    const std::string expected = "an integer from " + std::to_string(range.min) + " to " +
                                 std::to_string(range.max) + rangeReason;
    const std::optional<int64_t> number = ToInteger(value);
    if (!number)
    {
      FailType(PathOf(key), value, expected);
    }

    if (checkValues_ && (*number < range.min || *number > range.max))
    {
      Fail(PathOf(key), Describe(value) + " is out of range", expected);
    }
    return *number;
  }

  double GetNumber(const char* key, double defaultValue) const
  {
    if (!Has(key))
    {
      return defaultValue;
    }

    const std::optional<double> number = ToNumber(object_[key]);
    if (!number)
    {
      FailType(PathOf(key), object_[key], "a number of seconds");
    }
    return *number;
  }

  // An absent key gives a reader of an empty object, so that the caller fills in the defaults.
  ObjectReader GetObject(const char* key, const KeyList& allowedKeys) const
  {
    const Json::Value& child = Has(key) ? object_[key] : Json::Value(Json::objectValue);
    return ObjectReader(child, PathOf(key), allowedKeys, checkValues_);
  }

private:
  // True for the section, the Credentials objects and the KeyVault object, whose wrong-typed
  // value may still contain a client secret or a certificate password.
  static bool CanContainSecret(const KeyList& allowedKeys)
  {
    for (const char* key : allowedKeys)
    {
      for (const char* secretHolder : {"Credentials", "KeyVault", "ClientSecret"})
      {
        if (std::string(key) == secretHolder)
        {
          return true;
        }
      }
    }
    return false;
  }

  void CheckKeyIsAllowed(const std::string& name, const KeyList& allowedKeys) const
  {
    std::string sameIgnoringCase;
    for (const char* allowed : allowedKeys)
    {
      if (name == allowed)
      {
        return;
      }
      if (ToLower(name) == ToLower(allowed))
      {
        sameIgnoringCase = allowed;
      }
    }

    const std::string hint =
        sameIgnoringCase.empty() ? "" : " (keys are case-sensitive: " + sameIgnoringCase + ")";
    Fail(path_ + "." + name, "unknown key" + hint, "one of " + JoinKeys(allowedKeys));
  }

  Json::Value object_;  // a copy, so that the reader of an absent key can own an empty object
  std::string path_;
  bool checkValues_;
};


struct UrlParts
{
  std::string scheme;  // lower case
  bool hasUserInfo = false;
  std::string host;  // without the brackets of an IPv6 address
  std::string port;
  std::string rest;  // path, query and fragment
};


// Returns the position of the '@' that ends the user information of the authority starting at
// authorityStart, or npos when there is none.
size_t FindUserInfoEnd(const std::string& url, size_t authorityStart)
{
  const size_t authorityEnd = url.find_first_of("/?#", authorityStart);
  const size_t at = url.substr(authorityStart, authorityEnd - authorityStart).rfind('@');
  return (at == std::string::npos) ? at : authorityStart + at;
}


// Formats a URL for a message without its user information or query, which may contain a
// password or a token.
std::string DescribeUrl(const std::string& url)
{
  std::string displayed = url;
  const size_t schemeEnd = displayed.find("://");
  const size_t authorityStart = (schemeEnd == std::string::npos) ? 0 : schemeEnd + 3;
  const size_t at = FindUserInfoEnd(displayed, authorityStart);
  if (at != std::string::npos)
  {
    displayed.replace(authorityStart, at - authorityStart, kRedacted);
  }

  const size_t query = displayed.find_first_of("?#");
  if (query != std::string::npos)
  {
    displayed = displayed.substr(0, query) + "?...";
  }
  return Quote(displayed);
}


[[noreturn]] void FailUrl(const std::string& key, const std::string& url,
                          const std::string& problem)
{
  Fail(key, DescribeUrl(url) + " " + problem, "an http:// or https:// URL with a host");
}


void CheckHostName(const std::string& host, const std::string& key, const std::string& url)
{
  if (host.empty())
  {
    FailUrl(key, url, "has no host");
  }

  if (!IsToken(host, kMaxDomainNameLength, ".-_"))
  {
    FailUrl(key, url, "has an invalid host name");
  }
}


void CheckPort(const std::string& port, const std::string& key, const std::string& url)
{
  const bool isDigits = !port.empty() && port.size() <= kMaxPortDigits &&
                        port.find_first_not_of("0123456789") == std::string::npos;
  if (!isDigits || std::stoll(port) < 1 || std::stoll(port) > kMaxPort)
  {
    FailUrl(key, url, "has an invalid port " + Quote(port));
  }
}


void SplitHostAndPort(const std::string& authority, const std::string& key, const std::string& url,
                      UrlParts& parts)
{
  if (!authority.empty() && authority[0] == '[')
  {
    const size_t close = authority.find(']');
    if (close == std::string::npos)
    {
      FailUrl(key, url, "has no closing ']' after its IPv6 address");
    }

    parts.host = authority.substr(1, close - 1);
    in6_addr address{};
    if (inet_pton(AF_INET6, parts.host.c_str(), &address) != 1)
    {
      FailUrl(key, url, "has an invalid IPv6 address");
    }

    const std::string afterHost = authority.substr(close + 1);
    if (!afterHost.empty() && afterHost[0] != ':')
    {
      FailUrl(key, url, "has text after its IPv6 address");
    }
    if (!afterHost.empty())
    {
      parts.port = afterHost.substr(1);
      CheckPort(parts.port, key, url);
    }
    return;
  }

  const size_t colon = authority.find(':');
  parts.host = authority.substr(0, colon);
  CheckHostName(parts.host, key, url);
  if (colon != std::string::npos)
  {
    parts.port = authority.substr(colon + 1);
    CheckPort(parts.port, key, url);
  }
}


UrlParts SplitUrl(const std::string& url, const std::string& key)
{
  for (char c : url)
  {
    if (static_cast<unsigned char>(c) <= ' ')
    {
      FailUrl(key, url, "contains a space or a control character");
    }
  }

  const size_t schemeEnd = url.find("://");
  UrlParts parts;
  parts.scheme = ToLower(url.substr(0, schemeEnd));
  if (schemeEnd == std::string::npos || (parts.scheme != "http" && parts.scheme != "https"))
  {
    FailUrl(key, url, "is not an http:// or https:// URL");
  }

  const size_t authorityStart = schemeEnd + 3;
  const size_t authorityEnd = url.find_first_of("/?#", authorityStart);
  std::string authority = url.substr(authorityStart, authorityEnd - authorityStart);
  parts.rest = (authorityEnd == std::string::npos) ? "" : url.substr(authorityEnd);

  const size_t at = authority.rfind('@');
  if (at != std::string::npos)
  {
    parts.hasUserInfo = true;
    authority.erase(0, at + 1);
  }

  SplitHostAndPort(authority, key, url, parts);
  return parts;
}


// Checks the URL of an endpoint and returns it without trailing slashes, because the plugin
// appends paths to it. That is also why a query and a fragment are rejected. User information
// is rejected so that no password appears in the logs or the settings route, which show URLs.
std::string NormalizeEndpointUrl(const std::string& url, const std::string& key)
{
  const UrlParts parts = SplitUrl(url, key);
  if (parts.hasUserInfo)
  {
    Fail(key, DescribeUrl(url) + " contains a user name or password",
         "a URL without user information (credentials go in the Credentials object)");
  }

  if (parts.rest.find_first_of("?#") != std::string::npos)
  {
    Fail(key, DescribeUrl(url) + " contains a query or a fragment",
         "a base URL to which the plugin appends paths");
  }

  if (parts.scheme == "http" && !IsLoopbackHost(parts.host))
  {
    Fail(key, DescribeUrl(url) + " uses plain http:// with a host that is not loopback",
         "an https:// URL (http:// is allowed only for localhost, 127.0.0.0/8 and ::1)");
  }

  std::string normalized = url;
  while (normalized.back() == '/')
  {
    normalized.pop_back();
  }
  return normalized;
}


// Returns the text after the last '/' of the URL's path, "" when the path is empty.
std::string GetLastPathSegment(const std::string& url, const std::string& key)
{
  const std::string path = SplitUrl(url, key).rest;
  const size_t slash = path.rfind('/');
  return (slash == std::string::npos) ? "" : path.substr(slash + 1);
}


// Rejects the two usual mistakes made when a STOW-RS URL is copied in place of the base URL.
void CheckServiceUrlPath(const std::string& serviceUrl, const std::string& apiVersion,
                         const std::string& key)
{
  const std::string segment = GetLastPathSegment(serviceUrl, key);
  if (segment == "studies")
  {
    Fail(key, DescribeUrl(serviceUrl) + " ends with /studies",
         "the base URL of the service, without /studies, which the plugin appends");
  }

  const bool isVersion = segment.size() >= 2 && segment[0] == 'v' &&
                         segment.find_first_not_of("0123456789", 1) == std::string::npos;
  if (!apiVersion.empty() && isVersion)
  {
    Fail(key, DescribeUrl(serviceUrl) + " ends with the version segment /" + segment,
         "the URL without it, because the plugin appends ApiVersion (\"" + apiVersion + "\")");
  }
}


bool IsGuid(const std::string& text)
{
  constexpr size_t kGuidLength = 36;
  if (text.size() != kGuidLength)
  {
    return false;
  }

  for (size_t i = 0; i < text.size(); i++)
  {
    const bool isHyphenPosition = (i == 8 || i == 13 || i == 18 || i == 23);
    if (isHyphenPosition ? text[i] != '-' : !IsHexDigit(text[i]))
    {
      return false;
    }
  }
  return true;
}


bool IsDomainName(const std::string& text)
{
  return IsToken(text, kMaxDomainNameLength, ".-") && text.front() != '.' && text.front() != '-' &&
         text.back() != '.' && text.back() != '-' && text.find("..") == std::string::npos;
}


// Reads a file that the plugin opens later, so that a wrong path stops the plugin at start-up
// instead of failing the first request. Returns the file's content.
std::string ReadCheckedFile(const std::string& file, const std::string& key,
                            const std::string& expected)
{
  std::error_code error;
  const std::filesystem::file_status status = std::filesystem::status(file, error);
  if (!std::filesystem::exists(status))
  {
    Fail(key, "file " + Quote(file) + " not found", expected);
  }
  if (!std::filesystem::is_regular_file(status))
  {
    Fail(key, Quote(file) + " is not a regular file", expected);
  }

  std::ifstream stream(file, std::ios::binary);
  if (!stream)
  {
    const std::string reason = std::system_category().message(errno);
    Fail(key, "file " + Quote(file) + " cannot be opened (" + reason + ")", expected);
  }

  std::ostringstream content;
  content << stream.rdbuf();
  if (stream.bad())
  {
    Fail(key, "file " + Quote(file) + " cannot be read", expected);
  }
  return content.str();
}


void ReadDestination(const ObjectReader& reader, Configuration& configuration)
{
  std::string serviceUrl = reader.GetString("ServiceUrl", "");
  configuration.apiVersion = reader.GetString("ApiVersion", configuration.apiVersion);
  configuration.partition = reader.GetString("Partition", "");
  configuration.database = reader.GetString("Database", "");
  configuration.nodeName = reader.GetString("NodeName", "");

  if (!reader.IsCheckingValues())
  {
    configuration.serviceUrl = serviceUrl;
    return;
  }

  const std::string urlKey = reader.PathOf("ServiceUrl");
  if (serviceUrl.empty())
  {
    Fail(urlKey, "missing",
         std::string("the base URL of the DICOM service, such as ") + kServiceUrlExample);
  }
  configuration.serviceUrl = NormalizeEndpointUrl(serviceUrl, urlKey);

  const std::string& version = configuration.apiVersion;
  if (version != "v1" && version != "v2" && !version.empty())
  {
    Fail(reader.PathOf("ApiVersion"), "invalid value " + Quote(version),
         "\"v1\" or \"v2\" for the Azure DICOM service, or \"\" for a server without a "
         "version segment");
  }

  CheckServiceUrlPath(configuration.serviceUrl, version, urlKey);

  const std::string& nodeName = configuration.nodeName;
  if (!nodeName.empty() && !IsToken(nodeName, kMaxNodeNameLength, ".-_:@"))
  {
    Fail(reader.PathOf("NodeName"), "invalid value " + Quote(nodeName),
         "1 to " + std::to_string(kMaxNodeNameLength) +
             " letters, digits, '.', '-', '_', ':' or '@', different on every Orthanc node of "
             "one database, or \"\" for <hostname>:<HttpPort>");
  }

  const std::string& partition = configuration.partition;
  if (!partition.empty() && !IsToken(partition, kMaxPartitionLength, ".-_"))
  {
    Fail(reader.PathOf("Partition"), "invalid value " + Quote(partition),
         "1 to " + std::to_string(kMaxPartitionLength) +
             " letters, digits, '.', '-' or '_', or \"\" for the default partition");
  }
  if (!partition.empty() && version.empty())
  {
    Fail(reader.PathOf("Partition"), Quote(partition) + " is set while ApiVersion is \"\"",
         "an ApiVersion of \"v1\" or \"v2\", because only the Azure DICOM service has "
         "partitions");
  }
}


void ReadLimits(const ObjectReader& reader, Configuration& configuration)
{
  configuration.workers =
      ToUnsigned(reader.GetInteger("Workers", configuration.workers, kWorkersRange));
  configuration.maxInstancesPerRequest =
      ToUnsigned(reader.GetInteger("MaxInstancesPerRequest", configuration.maxInstancesPerRequest,
                                   kMaxInstancesPerRequestRange));
  configuration.maxRequestSizeMB = ToUnsigned(reader.GetInteger(
      "MaxRequestSizeMB", configuration.maxRequestSizeMB, kMaxRequestSizeMBRange));

  const int64_t timeout = reader.GetInteger(
      "RequestTimeoutSeconds", configuration.requestTimeoutSeconds, kRequestTimeoutSecondsRange);
  configuration.requestTimeoutSeconds = ToUnsigned(timeout);

  // A lease that expired during a request would let another worker send the same items. The
  // clamp only matters in a disabled configuration, where the timeout is not range-checked.
  const int64_t leaseBase = std::clamp(timeout, int64_t{0}, kRequestTimeoutSecondsRange.max);
  const IntegerRange leaseRange{leaseBase + 1, kMaxLeaseSeconds};
  const std::string leaseReason =
      ", greater than RequestTimeoutSeconds (" + std::to_string(leaseBase) +
      ") so that a lease cannot expire while its worker waits for an answer";
  configuration.leaseSeconds = ToUnsigned(
      reader.GetInteger("LeaseSeconds", leaseBase + kLeaseMarginSeconds, leaseRange, leaseReason));
}


void CheckRetryDelays(const ObjectReader& reader, const RetrySettings& retry)
{
  const std::string maxText = FormatNumber(kMaxRetryDelaySeconds);
  if (!(retry.initialDelaySeconds >= kMinRetryDelaySeconds &&
        retry.initialDelaySeconds <= kMaxRetryDelaySeconds))
  {
    Fail(reader.PathOf("InitialDelaySeconds"),
         FormatNumber(retry.initialDelaySeconds) + " is out of range",
         "a number of seconds from " + FormatNumber(kMinRetryDelaySeconds) + " to " + maxText);
  }

  const bool isDefault = !reader.Has("MaxDelaySeconds");
  const std::string maxDelayText =
      FormatNumber(retry.maxDelaySeconds) + (isDefault ? " (the default)" : "");
  const std::string initialText = FormatNumber(retry.initialDelaySeconds);
  if (retry.maxDelaySeconds < retry.initialDelaySeconds)
  {
    Fail(reader.PathOf("MaxDelaySeconds"),
         maxDelayText + " is less than InitialDelaySeconds (" + initialText + ")",
         "a number of seconds from " + initialText + " to " + maxText);
  }
  if (retry.maxDelaySeconds > kMaxRetryDelaySeconds)
  {
    Fail(reader.PathOf("MaxDelaySeconds"), maxDelayText + " is out of range",
         "a number of seconds from " + initialText + " to " + maxText);
  }
}


RetrySettings ReadRetry(const ObjectReader& reader)
{
  RetrySettings retry;
  retry.initialDelaySeconds = reader.GetNumber("InitialDelaySeconds", retry.initialDelaySeconds);
  retry.maxDelaySeconds = reader.GetNumber("MaxDelaySeconds", retry.maxDelaySeconds);
  retry.maxAttempts =
      ToUnsigned(reader.GetInteger("MaxAttempts", retry.maxAttempts, kMaxAttemptsRange));

  if (reader.IsCheckingValues())
  {
    CheckRetryDelays(reader, retry);
  }
  return retry;
}


TlsSettings ReadTls(const ObjectReader& reader)
{
  TlsSettings tls;
  tls.verifyPeer = reader.GetBool("VerifyPeer", tls.verifyPeer);
  tls.caCertificates = reader.GetString("CaCertificates", "");
  tls.allowUnverifiedRemoteHosts =
      reader.GetBool("AllowUnverifiedRemoteHosts", tls.allowUnverifiedRemoteHosts);

  if (reader.IsCheckingValues() && !tls.caCertificates.empty())
  {
    const std::string key = reader.PathOf("CaCertificates");
    const std::string expected = "the path of a readable PEM file of CA certificates";
    if (ReadCheckedFile(tls.caCertificates, key, expected).find(kPemCertificateMarker) ==
        std::string::npos)
    {
      Fail(key, "file " + Quote(tls.caCertificates) + " contains no PEM certificate", expected);
    }
  }
  return tls;
}


// Adds the Entra ID host of a credential whose type requests its token from Entra ID.
void AddAuthorityHost(std::vector<std::pair<std::string, std::string>>& urls,
                      const std::string& credentialsKey, const CredentialSettings& credentials)
{
  if (credentials.type == CredentialType::ClientSecret ||
      credentials.type == CredentialType::ClientCertificate ||
      credentials.type == CredentialType::WorkloadIdentity)
  {
    urls.emplace_back(credentialsKey + ".AuthorityHost", credentials.authorityHost);
  }
}


// Returns the configuration keys and hosts, among ServiceUrl and the Entra ID and Key Vault
// endpoints that the credentials use, that are not on loopback.
std::vector<std::pair<std::string, std::string>> ListRemoteHosts(const Configuration& configuration)
{
  std::vector<std::pair<std::string, std::string>> urls = {
      {"AzureDicom.ServiceUrl", configuration.serviceUrl}};
  const CredentialSettings& credentials = configuration.credentials;
  AddAuthorityHost(urls, "AzureDicom.Credentials", credentials);
  if (credentials.keyVault)
  {
    urls.emplace_back("AzureDicom.Credentials.KeyVault.VaultUrl", credentials.keyVault->vaultUrl);
    if (credentials.keyVault->credentials)
    {
      AddAuthorityHost(urls, "AzureDicom.Credentials.KeyVault.Credentials",
                       *credentials.keyVault->credentials);
    }
  }

  std::vector<std::pair<std::string, std::string>> remote;
  for (const auto& url : urls)
  {
    const std::string host = GetUrlHost(url.second, url.first);
    if (!IsLoopbackHost(host))
    {
      remote.emplace_back(url.first, host);
    }
  }
  return remote;
}


// Unverified certificates expose tokens and images to an impostor, so they are accepted for a
// host that is not on loopback only with Tls.AllowUnverifiedRemoteHosts.
void CheckUnverifiedTls(const Configuration& configuration)
{
  if (configuration.tls.verifyPeer || configuration.tls.allowUnverifiedRemoteHosts)
  {
    return;
  }

  const auto remote = ListRemoteHosts(configuration);
  if (!remote.empty())
  {
    Fail("AzureDicom.Tls.VerifyPeer",
         "false, but " + remote.front().first + " is the host " + Quote(remote.front().second) +
             ", not on loopback",
         "true (with Tls.CaCertificates for a private CA), or Tls.AllowUnverifiedRemoteHosts "
         "true to accept unverified certificates knowingly");
  }
}


ConflictPolicy ReadConflictPolicy(const ObjectReader& reader)
{
  const std::string policy = reader.GetString("OnConflict", "Keep");
  if (policy == "Replace")
  {
    return ConflictPolicy::Replace;
  }

  if (policy != "Keep" && reader.IsCheckingValues())
  {
    Fail(reader.PathOf("OnConflict"), "invalid value " + Quote(policy), "\"Keep\" or \"Replace\"");
  }
  return ConflictPolicy::Keep;
}


bool ParseCredentialType(const std::string& name, CredentialType& type)
{
  for (CredentialType candidate :
       {CredentialType::None, CredentialType::ClientSecret, CredentialType::ClientCertificate,
        CredentialType::ManagedIdentity, CredentialType::WorkloadIdentity})
  {
    if (name == ToString(candidate))
    {
      type = candidate;
      return true;
    }
  }
  return false;
}


// The service's own credential and the credential that reads Key Vault differ in their
// defaults, and only the first may take its secret from Key Vault.
enum class CredentialOwner
{
  Service,
  KeyVault
};


void ReadCredentialType(const ObjectReader& reader, CredentialSettings& credentials)
{
  if (!reader.Has("Type"))
  {
    if (reader.IsCheckingValues())
    {
      Fail(reader.PathOf("Type"), "missing", kCredentialTypes);
    }
    return;
  }

  const std::string name = reader.GetString("Type", "");
  if (!ParseCredentialType(name, credentials.type) && reader.IsCheckingValues())
  {
    Fail(reader.PathOf("Type"), "invalid value " + Quote(name), kCredentialTypes);
  }
}


// An empty string counts as an absent key, so that a template can list every key and leave the
// unused ones blank.
void RejectUnusedKeys(const ObjectReader& reader, const KeyList& unusedKeys,
                      const std::string& reason, const std::string& expected)
{
  for (const char* key : unusedKeys)
  {
    if (!reader.GetString(key, "").empty())
    {
      Fail(reader.PathOf(key), "not used " + reason, expected);
    }
  }
}


// Names the problem of a required string that is empty: missing, or an empty string, which is
// what Orthanc makes of a ${VARIABLE} that is not set in its environment.
std::string DescribeEmptyKey(const ObjectReader& reader, const char* key)
{
  return reader.Has(key) ? "empty (an environment variable named in ${...} that is not set for "
                           "Orthanc becomes an empty string)"
                         : "missing";
}


void RequireKey(const ObjectReader& reader, const char* key, const std::string& value,
                const CredentialSettings& credentials, const std::string& expected)
{
  if (value.empty())
  {
    Fail(reader.PathOf(key), DescribeEmptyKey(reader, key),
         expected + ", which Type " + ToString(credentials.type) + " requires");
  }
}


void CheckEntraApplication(const ObjectReader& reader, const CredentialSettings& credentials)
{
  RequireKey(reader, "TenantId", credentials.tenantId, credentials,
             "the directory (tenant) ID, a GUID or a domain name");
  RequireKey(reader, "ClientId", credentials.clientId, credentials,
             "the application (client) ID, a GUID");
}


void CheckClientSecretCredentials(const ObjectReader& reader, const CredentialSettings& credentials)
{
  RejectUnusedKeys(reader, {"CertificatePath", "CertificatePassword"}, "by Type ClientSecret",
                   "CertificatePath and CertificatePassword only with Type ClientCertificate");
  CheckEntraApplication(reader, credentials);

  const std::string expected =
      "either a non-empty ClientSecret or a KeyVault object that "
      "names the secret in Key Vault";
  if (credentials.clientSecret.empty() && !credentials.keyVault)
  {
    Fail(reader.PathOf("ClientSecret"), DescribeEmptyKey(reader, "ClientSecret"), expected);
  }
  if (!credentials.clientSecret.empty() && credentials.keyVault)
  {
    Fail(reader.PathOf("ClientSecret"), "set together with KeyVault", expected);
  }
}


void CheckClientCertificateCredentials(const ObjectReader& reader,
                                       const CredentialSettings& credentials)
{
  RejectUnusedKeys(reader, {"ClientSecret"}, "by Type ClientCertificate",
                   "ClientSecret only with Type ClientSecret");
  CheckEntraApplication(reader, credentials);

  const std::string key = reader.PathOf("CertificatePath");
  const std::string expected =
      "either the path of a PEM or PKCS#12 file in CertificatePath or "
      "a KeyVault object that names the certificate in Key Vault";
  if (credentials.certificatePath.empty() && !credentials.keyVault)
  {
    Fail(key, "missing", expected);
  }
  if (!credentials.certificatePath.empty() && credentials.keyVault)
  {
    Fail(key, "set together with KeyVault", expected);
  }
  if (!credentials.certificatePath.empty())
  {
    ReadCheckedFile(credentials.certificatePath, key, "the path of a readable PEM or PKCS#12 file");
  }
}


void CheckCredentialsOfType(const ObjectReader& reader, const CredentialSettings& credentials)
{
  switch (credentials.type)
  {
    case CredentialType::None:
      RejectUnusedKeys(reader,
                       {"TenantId", "ClientId", "ClientSecret", "CertificatePath",
                        "CertificatePassword", "AuthorityHost", "Scope"},
                       "with Type None, which sends no Authorization header", "only the key Type");
      break;
    case CredentialType::ClientSecret:
      CheckClientSecretCredentials(reader, credentials);
      break;
    case CredentialType::ClientCertificate:
      CheckClientCertificateCredentials(reader, credentials);
      break;
    case CredentialType::ManagedIdentity:
      RejectUnusedKeys(
          reader,
          {"TenantId", "ClientSecret", "CertificatePath", "CertificatePassword", "AuthorityHost"},
          "by a managed identity, which gets its token from the identity endpoint "
          "of the host",
          "only Type, ClientId (of a user-assigned identity) and Scope");
      break;
    case CredentialType::WorkloadIdentity:
      RejectUnusedKeys(reader, {"ClientSecret", "CertificatePath", "CertificatePassword"},
                       "by a workload identity, which presents the federated token file",
                       "only Type, TenantId, ClientId, AuthorityHost and Scope");
      break;
  }
}


void CheckCredentials(const ObjectReader& reader, CredentialSettings& credentials)
{
  CheckCredentialsOfType(reader, credentials);

  const bool takesKeyVault = credentials.type == CredentialType::ClientSecret ||
                             credentials.type == CredentialType::ClientCertificate;
  if (credentials.keyVault && !takesKeyVault)
  {
    Fail(reader.PathOf("KeyVault"),
         std::string("not allowed with Type ") + ToString(credentials.type),
         "KeyVault only with Type ClientSecret or ClientCertificate");
  }

  if (!credentials.tenantId.empty() && !IsGuid(credentials.tenantId) &&
      !IsDomainName(credentials.tenantId))
  {
    Fail(reader.PathOf("TenantId"), "invalid value " + Quote(credentials.tenantId),
         "a GUID or a domain name such as contoso.onmicrosoft.com");
  }

  if (!credentials.clientId.empty() && !IsGuid(credentials.clientId))
  {
    Fail(reader.PathOf("ClientId"), "invalid value " + Quote(credentials.clientId),
         "a GUID such as 00000000-0000-0000-0000-000000000000");
  }

  if (reader.Has("AuthorityHost") && !reader.GetString("AuthorityHost", "").empty())
  {
    credentials.authorityHost =
        NormalizeEndpointUrl(credentials.authorityHost, reader.PathOf("AuthorityHost"));
  }
}


std::shared_ptr<KeyVaultSettings> ReadKeyVault(const ObjectReader& reader);


// A token request of the client credentials flow names the resource's application ID URI
// followed by /.default, and the managed identity endpoints take that URI alone.
bool IsValidScope(const std::string& scope)
{
  const std::string suffix = "/.default";
  if (scope.size() <= suffix.size() ||
      scope.compare(scope.size() - suffix.size(), suffix.size(), suffix) != 0)
  {
    return false;
  }

  return std::all_of(scope.begin(), scope.end(), [](char c) { return c > ' ' && c <= '~'; });
}


// An absent Credentials object means Type None for the service, and a managed identity for Key
// Vault. An empty AuthorityHost or Scope means the default.
CredentialSettings ReadCredentials(const ObjectReader& parent, CredentialOwner owner)
{
  CredentialSettings credentials;
  if (owner == CredentialOwner::KeyVault)
  {
    credentials.type = CredentialType::ManagedIdentity;
    credentials.scope = kKeyVaultScope;
  }

  if (!parent.Has("Credentials"))
  {
    return credentials;
  }

  const ObjectReader reader = parent.GetObject("Credentials", kCredentialKeys);
  if (owner == CredentialOwner::KeyVault && reader.Has("KeyVault"))
  {
    Fail(reader.PathOf("KeyVault"), "not allowed in the credentials that read Key Vault",
         "the vault's own credential in this object, usually {\"Type\": \"ManagedIdentity\"}");
  }

  ReadCredentialType(reader, credentials);
  if (owner == CredentialOwner::KeyVault && credentials.type == CredentialType::None &&
      reader.IsCheckingValues())
  {
    Fail(reader.PathOf("Type"), "\"None\" cannot read Key Vault, which requires a token",
         "one of ManagedIdentity, ClientSecret, ClientCertificate, WorkloadIdentity");
  }

  credentials.tenantId = reader.GetString("TenantId", "");
  credentials.clientId = reader.GetString("ClientId", "");
  credentials.clientSecret = reader.GetString("ClientSecret", "", true);
  credentials.certificatePath = reader.GetString("CertificatePath", "");
  credentials.certificatePassword = reader.GetString("CertificatePassword", "", true);

  const std::string authorityHost = reader.GetString("AuthorityHost", "");
  credentials.authorityHost = authorityHost.empty() ? credentials.authorityHost : authorityHost;
  const std::string scope = reader.GetString("Scope", "");
  if (!scope.empty() && reader.IsCheckingValues() && !IsValidScope(scope))
  {
    Fail(reader.PathOf("Scope"), "invalid value " + Quote(scope),
         "the application ID URI of the resource followed by /.default, without spaces, such "
         "as \"" +
             CredentialSettings().scope + "\" (the default for the DICOM service)");
  }
  credentials.scope = scope.empty() ? credentials.scope : scope;

  if (reader.Has("KeyVault"))
  {
    credentials.keyVault = ReadKeyVault(reader.GetObject("KeyVault", kKeyVaultKeys));
  }

  if (reader.IsCheckingValues())
  {
    CheckCredentials(reader, credentials);
  }
  return credentials;
}


void CheckKeyVault(const ObjectReader& reader, KeyVaultSettings& keyVault)
{
  const std::string urlKey = reader.PathOf("VaultUrl");
  if (keyVault.vaultUrl.empty())
  {
    Fail(urlKey, "missing", std::string("the URL of the vault, such as ") + kVaultUrlExample);
  }
  keyVault.vaultUrl = NormalizeEndpointUrl(keyVault.vaultUrl, urlKey);

  const std::string nameExpected = "1 to " + std::to_string(kMaxSecretNameLength) +
                                   " letters, digits or '-', the name of a Key Vault secret";
  if (keyVault.secretName.empty())
  {
    Fail(reader.PathOf("SecretName"), "missing", nameExpected);
  }
  if (!IsToken(keyVault.secretName, kMaxSecretNameLength, "-"))
  {
    Fail(reader.PathOf("SecretName"), "invalid value " + Quote(keyVault.secretName), nameExpected);
  }

  const std::string& version = keyVault.secretVersion;
  const bool isVersion = version.size() == kSecretVersionLength &&
                         std::all_of(version.begin(), version.end(), IsHexDigit);
  if (!version.empty() && !isVersion)
  {
    Fail(reader.PathOf("SecretVersion"), "invalid value " + Quote(version),
         std::to_string(kSecretVersionLength) +
             " hexadecimal digits, or \"\" for the newest version");
  }
}


std::shared_ptr<KeyVaultSettings> ReadKeyVault(const ObjectReader& reader)
{
  auto keyVault = std::make_shared<KeyVaultSettings>();
  keyVault->vaultUrl = reader.GetString("VaultUrl", "");
  keyVault->secretName = reader.GetString("SecretName", "");
  keyVault->secretVersion = reader.GetString("SecretVersion", "");
  keyVault->refreshSeconds = ToUnsigned(
      reader.GetInteger("RefreshSeconds", keyVault->refreshSeconds, kRefreshSecondsRange));
  keyVault->credentials =
      std::make_shared<CredentialSettings>(ReadCredentials(reader, CredentialOwner::KeyVault));

  if (reader.IsCheckingValues())
  {
    CheckKeyVault(reader, *keyVault);
  }
  return keyVault;
}


std::string Redact(const std::string& secret)
{
  return secret.empty() ? "" : kRedacted;
}


Json::Value KeyVaultToJson(const KeyVaultSettings& keyVault);


// Writes only the keys that the credential's type takes, so that the result parses again.
Json::Value CredentialsToJson(const CredentialSettings& credentials)
{
  Json::Value json(Json::objectValue);
  json["Type"] = ToString(credentials.type);

  const bool isEntraApplication = credentials.type == CredentialType::ClientSecret ||
                                  credentials.type == CredentialType::ClientCertificate;
  if (isEntraApplication || credentials.type == CredentialType::WorkloadIdentity)
  {
    json["TenantId"] = credentials.tenantId;
  }
  if (credentials.type != CredentialType::None)
  {
    json["ClientId"] = credentials.clientId;
  }
  if (credentials.type == CredentialType::ClientSecret)
  {
    json["ClientSecret"] = Redact(credentials.clientSecret);
  }
  if (credentials.type == CredentialType::ClientCertificate)
  {
    json["CertificatePath"] = credentials.certificatePath;
    json["CertificatePassword"] = Redact(credentials.certificatePassword);
  }
  if (isEntraApplication || credentials.type == CredentialType::WorkloadIdentity)
  {
    json["AuthorityHost"] = credentials.authorityHost;
  }
  if (credentials.type != CredentialType::None)
  {
    json["Scope"] = credentials.scope;
  }
  if (credentials.keyVault)
  {
    json["KeyVault"] = KeyVaultToJson(*credentials.keyVault);
  }
  return json;
}


Json::Value KeyVaultToJson(const KeyVaultSettings& keyVault)
{
  Json::Value json(Json::objectValue);
  json["VaultUrl"] = keyVault.vaultUrl;
  json["SecretName"] = keyVault.secretName;
  json["SecretVersion"] = keyVault.secretVersion;
  json["RefreshSeconds"] = keyVault.refreshSeconds;
  if (keyVault.credentials)
  {
    json["Credentials"] = CredentialsToJson(*keyVault.credentials);
  }
  return json;
}
}  // namespace


const char* ToString(CredentialType type)
{
  switch (type)
  {
    case CredentialType::None:
      return "None";
    case CredentialType::ClientSecret:
      return "ClientSecret";
    case CredentialType::ClientCertificate:
      return "ClientCertificate";
    case CredentialType::ManagedIdentity:
      return "ManagedIdentity";
    case CredentialType::WorkloadIdentity:
      return "WorkloadIdentity";
  }
  return "Unknown";
}


std::string GetUnverifiedTlsWarning(const Configuration& configuration)
{
  if (configuration.tls.verifyPeer)
  {
    return "";
  }

  std::string hosts;
  for (const auto& remote : ListRemoteHosts(configuration))
  {
    hosts += (hosts.empty() ? "" : ", ") + remote.first + " " + Quote(remote.second);
  }
  if (hosts.empty())
  {
    return "";
  }

  return "AzureDicom.Tls.VerifyPeer is false and Tls.AllowUnverifiedRemoteHosts is true, so the "
         "certificates of " +
         hosts +
         " are not checked and tokens and images can reach an "
         "impostor; set VerifyPeer to true and use Tls.CaCertificates for a private CA";
}


Destination Configuration::GetDestination() const
{
  return Destination{serviceUrl, apiVersion, partition};
}


std::string Configuration::GetDicomWebBase() const
{
  return GetDestination().GetDicomWebBase();
}


std::string Configuration::GetStowUrl() const
{
  return GetDicomWebBase() + "/studies";
}


Configuration ParseConfiguration(const Json::Value& section)
{
  Configuration configuration;
  configuration.leaseSeconds =
      configuration.requestTimeoutSeconds + static_cast<unsigned int>(kLeaseMarginSeconds);

  if (section.isNull())
  {
    configuration.enable = false;
    return configuration;
  }

  ObjectReader reader(section, kSectionName, kTopLevelKeys, true);
  configuration.enable = reader.GetBool("Enable", configuration.enable);
  reader.SetCheckingValues(configuration.enable);

  ReadDestination(reader, configuration);
  ReadLimits(reader, configuration);
  configuration.retry = ReadRetry(reader.GetObject("Retry", kRetryKeys));
  configuration.tls = ReadTls(reader.GetObject("Tls", kTlsKeys));
  configuration.mirrorDeletes = reader.GetBool("MirrorDeletes", configuration.mirrorDeletes);
  configuration.onConflict = ReadConflictPolicy(reader);
  configuration.credentials = ReadCredentials(reader, CredentialOwner::Service);
  if (reader.IsCheckingValues())
  {
    CheckUnverifiedTls(configuration);
  }
  return configuration;
}


Json::Value ToRedactedJson(const Configuration& configuration)
{
  Json::Value json(Json::objectValue);
  json["Enable"] = configuration.enable;
  json["ServiceUrl"] = configuration.serviceUrl;
  json["ApiVersion"] = configuration.apiVersion;
  json["Partition"] = configuration.partition;
  json["Database"] = RedactDatabase(configuration.database);
  json["NodeName"] = configuration.nodeName;
  json["Workers"] = configuration.workers;
  json["MaxInstancesPerRequest"] = configuration.maxInstancesPerRequest;
  json["MaxRequestSizeMB"] = configuration.maxRequestSizeMB;
  json["RequestTimeoutSeconds"] = configuration.requestTimeoutSeconds;
  json["LeaseSeconds"] = configuration.leaseSeconds;

  Json::Value& retry = json["Retry"];
  retry["InitialDelaySeconds"] = configuration.retry.initialDelaySeconds;
  retry["MaxDelaySeconds"] = configuration.retry.maxDelaySeconds;
  retry["MaxAttempts"] = configuration.retry.maxAttempts;

  Json::Value& tls = json["Tls"];
  tls["VerifyPeer"] = configuration.tls.verifyPeer;
  tls["CaCertificates"] = configuration.tls.caCertificates;
  tls["AllowUnverifiedRemoteHosts"] = configuration.tls.allowUnverifiedRemoteHosts;

  json["MirrorDeletes"] = configuration.mirrorDeletes;
  json["OnConflict"] = (configuration.onConflict == ConflictPolicy::Replace) ? "Replace" : "Keep";
  json["Credentials"] = CredentialsToJson(configuration.credentials);
  return json;
}


bool IsLoopbackHost(const std::string& host)
{
  std::string name = ToLower(host);
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']')
  {
    name = name.substr(1, name.size() - 2);
  }

  if (name == "localhost")
  {
    return true;
  }

  constexpr unsigned int kLoopbackFirstOctet = 127;
  in_addr ipv4{};
  if (inet_pton(AF_INET, name.c_str(), &ipv4) == 1)
  {
    return (ntohl(ipv4.s_addr) >> 24) == kLoopbackFirstOctet;
  }

  // ::1, or 127.0.0.0/8 written as an IPv4-mapped address (::ffff:127.0.0.1).
  in6_addr ipv6{};
  if (inet_pton(AF_INET6, name.c_str(), &ipv6) == 1)
  {
    constexpr size_t kMappedFirstOctet = 12;
    return IN6_IS_ADDR_LOOPBACK(&ipv6) ||
           (IN6_IS_ADDR_V4MAPPED(&ipv6) && ipv6.s6_addr[kMappedFirstOctet] == kLoopbackFirstOctet);
  }
  return false;
}


std::string GetUrlHost(const std::string& url, const std::string& key)
{
  return SplitUrl(url, key).host;
}
}  // namespace AzureDicom
