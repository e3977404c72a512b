#include "Azure/TokenRequest.h"

#include "Azure/Redaction.h"

#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Common/Json.h"

#include <json/reader.h>
#include <json/value.h>
#include <json/writer.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <utility>
#include <vector>

namespace AzureDicom
{
namespace
{
const long HTTP_OK = 200;
const unsigned int TOKEN_REQUEST_TIMEOUT_SECONDS = 30;
const size_t MAX_EXCERPT_CHARS = 300;
const double MS_PER_SECOND = 1000;
const double MAX_SECONDS = 1e11;  // about 3000 years: keeps the conversion to int64 ms defined
const char FORM_CONTENT_TYPE[] = "application/x-www-form-urlencoded";
const int HOURS_PER_HALF_DAY = 12;
const int SECONDS_PER_MINUTE = 60;
const int SECONDS_PER_HOUR = 3600;
const int TM_BASE_YEAR = 1900;


std::string RemoveTrailingSlashes(std::string url)
{
  while (!url.empty() && url.back() == '/')
  {
    url.pop_back();
  }

  return url;
}




std::string MakePrintableExcerpt(const std::string& text)
{
  return MakePrintable(text, MAX_EXCERPT_CHARS);
}


std::string GetStringField(const Json::Value& document, const char* name)
{
  const Json::Value& field = document[name];
  return field.isString() ? field.asString() : std::string();
}


// Reads a number of seconds given as a JSON number or as a string of digits, as managed
// identity endpoints send expires_on. Returns false when the field is absent or not numeric.
bool ReadSeconds(const Json::Value& field, double& seconds)
{
  if (field.isNumeric())
  {
    seconds = field.asDouble();
    return std::fabs(seconds) < MAX_SECONDS;
  }

  if (!field.isString() || field.asString().empty())
  {
    return false;
  }

  const std::string text = field.asString();
  char* end = nullptr;
  errno = 0;
  seconds = std::strtod(text.c_str(), &end);
  return errno == 0 && end == text.c_str() + text.size() && std::fabs(seconds) < MAX_SECONDS;
}


bool ReadDigits(const std::string& text, size_t& position, size_t minDigits, size_t maxDigits,
                int& value)
{
  size_t count = 0;
  value = 0;
  while (position < text.size() && count < maxDigits &&
         std::isdigit(static_cast<unsigned char>(text[position])))
  {
    value = value * 10 + (text[position] - '0');
    position++;
    count++;
  }

  return count >= minDigits;
}


bool ReadLiteral(const std::string& text, size_t& position, const char* literal)
{
  const size_t length = std::strlen(literal);
  if (text.compare(position, length, literal) != 0)
  {
    return false;
  }

  position += length;
  return true;
}


// Reads "h:mm:ss", then " AM" or " PM" when present, as an hour of 0 to 23.
bool ReadClock(const std::string& text, size_t& position, std::tm& time)
{
  if (!ReadDigits(text, position, 1, 2, time.tm_hour) || !ReadLiteral(text, position, ":") ||
      !ReadDigits(text, position, 2, 2, time.tm_min) || !ReadLiteral(text, position, ":") ||
      !ReadDigits(text, position, 2, 2, time.tm_sec) || time.tm_min > 59 || time.tm_sec > 59)
  {
    return false;
  }

  const bool morning = ReadLiteral(text, position, " AM");
  const bool afternoon = !morning && ReadLiteral(text, position, " PM");
  if (!morning && !afternoon)
  {
    return time.tm_hour < 24;
  }

  if (time.tm_hour < 1 || time.tm_hour > HOURS_PER_HALF_DAY)
  {
    return false;
  }

  time.tm_hour = time.tm_hour % HOURS_PER_HALF_DAY + (afternoon ? HOURS_PER_HALF_DAY : 0);
  return true;
}


// Reads " Z" or " +hh:mm" / " -hh:mm" as seconds east of UTC.
bool ReadUtcOffset(const std::string& text, size_t& position, int& offsetSeconds)
{
  if (ReadLiteral(text, position, " Z"))
  {
    offsetSeconds = 0;
    return true;
  }

  const bool east = ReadLiteral(text, position, " +");
  if (!east && !ReadLiteral(text, position, " -"))
  {
    return false;
  }

  int hours = 0;
  int minutes = 0;
  if (!ReadDigits(text, position, 2, 2, hours) || !ReadLiteral(text, position, ":") ||
      !ReadDigits(text, position, 2, 2, minutes) || hours > 23 || minutes > 59)
  {
    return false;
  }

  offsetSeconds = (east ? 1 : -1) * (hours * SECONDS_PER_HOUR + minutes * SECONDS_PER_MINUTE);
  return true;
}


// Reads expires_on in the format of App Service's API version 2017-09-01,
// "M/D/YYYY h:mm:ss AM +00:00", also with a 24-hour clock and no AM or PM, which Azure's Java
// SDK accepts as well. Returns false for any other text and for a day that does not exist.
bool ReadAppServiceDate(const Json::Value& field, double& seconds)
{
  if (!field.isString())
  {
    return false;
  }

  const std::string text = field.asString();
  std::tm time{};
  size_t position = 0;
  int month = 0;
  int offsetSeconds = 0;
  if (!ReadDigits(text, position, 1, 2, month) || !ReadLiteral(text, position, "/") ||
      !ReadDigits(text, position, 1, 2, time.tm_mday) || !ReadLiteral(text, position, "/") ||
      !ReadDigits(text, position, 4, 4, time.tm_year) || !ReadLiteral(text, position, " ") ||
      !ReadClock(text, position, time) || !ReadUtcOffset(text, position, offsetSeconds) ||
      position != text.size() || month < 1 || month > 12 || time.tm_mday < 1)
  {
    return false;
  }

  time.tm_mon = month - 1;
  time.tm_year -= TM_BASE_YEAR;
  const int day = time.tm_mday;
  const time_t utc = timegm(&time);  // normalizes time, so that 31 April becomes 1 May

  if (time.tm_mday != day || time.tm_mon != month - 1)
  {
    return false;
  }

  seconds = static_cast<double>(utc) - offsetSeconds;
  return true;
}


// "ClientSecret credential", or "ManagedIdentity credential (AzureArc)" with a source.
std::string NameCredential(const std::string& credentialType, const std::string& source)
{
  return credentialType + " credential" + (source.empty() ? "" : " (" + source + ")");
}


std::string DescribeEntraError(const Json::Value& document)
{
  const std::string error = GetStringField(document, "error");
  std::string description = MakePrintableExcerpt(GetStringField(document, "error_description"));

  // error_description normally starts with "AADSTS<code>:". When it does not, the code is taken
  // from error_codes, because Entra's error documentation is indexed by that code.
  const Json::Value& codes = document["error_codes"];
  if (description.find("AADSTS") == std::string::npos && codes.isArray() && !codes.empty() &&
      codes[0].isIntegral())
  {
    description = "AADSTS" + std::to_string(codes[0].asLargestInt()) +
                  (description.empty() ? "" : ": " + description);
  }

  const std::string traceId = MakePrintableExcerpt(GetStringField(document, "trace_id"));
  if (!traceId.empty() && description.find(traceId) == std::string::npos)
  {
    description += (description.empty() ? "" : " ") + std::string("Trace ID: ") + traceId;
  }

  if (error.empty())
  {
    return description;
  }

  return description.empty() ? MakePrintableExcerpt(error)
                             : MakePrintableExcerpt(error) + ": " + description;
}


[[noreturn]] void ThrowErrorResponse(const HttpResponse& response, const std::string& endpoint,
                                     const std::string& credentialName)
{
  std::string detail;
  Json::Value document;
  if (ParseJson(response.body, document) && document.isObject())
  {
    detail = DescribeEntraError(document);
  }

  if (detail.empty())
  {
    detail = response.body.empty() ? "(empty body)" : MakePrintableExcerpt(response.body);
  }

  throw Exception(ErrorCode::Unauthorized, credentialName + ": the token request to " + endpoint +
                                               " failed with HTTP " +
                                               std::to_string(response.status) + ": " + detail);
}






}  // namespace


std::string GetEntraTokenUrl(const std::string& authorityHost, const std::string& tenantId)
{
  return RemoveTrailingSlashes(authorityHost) + "/" + UrlEncode(tenantId) + "/oauth2/v2.0/token";
}


void RequireCredentialSetting(const std::string& credentialType, const std::string& value,
                              const char* key, const char* expected)
{
  if (value.empty())
  {
    throw Exception(ErrorCode::BadConfiguration, credentialType + " credential: Credentials." +
                                                     key + " is empty; expected " + expected);
  }
}


AccessToken PostTokenRequest(const std::string& tokenUrl, const std::string& formBody,
                             const std::vector<std::string>& secrets,
                             const std::string& credentialType, const TlsSettings& tls)
{
  HttpRequest request;
  request.method = "POST";
  request.url = tokenUrl;
  request.headers = {{"Content-Type", FORM_CONTENT_TYPE}, {"Accept", "application/json"}};
  request.body = &formBody;
  request.timeoutSeconds = TOKEN_REQUEST_TIMEOUT_SECONDS;

  return SendTokenRequest(request, secrets, credentialType, std::string(), tls);
}


AccessToken SendTokenRequest(const HttpRequest& request, const std::vector<std::string>& secrets,
                             const std::string& credentialType, const std::string& source,
                             const TlsSettings& tls)
{
  const std::string endpoint = request.url.substr(0, request.url.find('?'));

  const std::vector<std::string> secretForms = ListSecretForms(secrets);
  try
  {
    HttpClient client(tls);
    HttpResponse response = client.Execute(request);
    if (response.status != HTTP_OK)
    {
      response.body = RedactSecrets(response.body, secretForms);
    }

    return ParseTokenResponse(response, endpoint, credentialType, NowMs(), source);
  }
  catch (const Exception& e)
  {
    const std::string message = e.GetCode() == ErrorCode::NetworkError
                                    ? NameCredential(credentialType, source) + ": " + e.what()
                                    : std::string(e.what());
    // The body lost only whole forms, so that an echo that JSON escapes hide is replaced whole
    // once decoded. Here parts go too: of a secret cut by the excerpt, or quoted in part.
    throw Exception(e.GetCode(), RedactSecretsAndFragments(message, secretForms));
  }
}


AccessToken ParseTokenResponse(const HttpResponse& response, const std::string& endpoint,
                               const std::string& credentialType, int64_t now,
                               const std::string& source)
{
  const std::string credentialName = NameCredential(credentialType, source);
  if (response.status != HTTP_OK)
  {
    ThrowErrorResponse(response, endpoint, credentialName);
  }

  const std::string where = credentialName + ": the token response of " + endpoint;

  Json::Value document;
  if (!ParseJson(response.body, document) || !document.isObject())
  {
    // A successful response carries the token, so its body is described, never quoted.
    throw Exception(ErrorCode::ProtocolError,
                    where + " is not a JSON object (" + std::to_string(response.body.size()) +
                        " bytes of " +
                        (response.GetHeader("content-type").empty()
                             ? std::string("no content type")
                             : MakePrintableExcerpt(response.GetHeader("content-type"))) +
                        ")");
  }

  AccessToken token;
  token.value = GetStringField(document, "access_token");
  if (token.value.empty())
  {
    throw Exception(ErrorCode::ProtocolError, where + " has no access_token string");
  }

  const std::string tokenType = GetStringField(document, "token_type");
  if (!tokenType.empty() && tokenType != "Bearer" && tokenType != "bearer")
  {
    throw Exception(
        ErrorCode::ProtocolError,
        where + " has token_type \"" + MakePrintableExcerpt(tokenType) + "\"; expected Bearer");
  }

  double seconds = 0;
  if (ReadSeconds(document["expires_in"], seconds))
  {
    token.expiresOn = now + static_cast<int64_t>(seconds * MS_PER_SECOND);
  }
  else if (ReadSeconds(document["expires_on"], seconds) ||
           ReadAppServiceDate(document["expires_on"], seconds))
  {
    token.expiresOn = static_cast<int64_t>(seconds * MS_PER_SECOND);
  }
  else
  {
    throw Exception(ErrorCode::ProtocolError,
                    where +
                        " has no readable expires_in or expires_on; expected the token's "
                        "lifetime in seconds, or its expiry in seconds since the epoch or as "
                        "\"M/D/YYYY h:mm:ss AM +00:00\"");
  }

  if (token.expiresOn <= now)
  {
    throw Exception(ErrorCode::ProtocolError,
                    where +
                        " has a token that is already expired; expected a positive "
                        "expires_in, or an expires_on in the future (check the system clock)");
  }

  return token;
}
}  // namespace AzureDicom
