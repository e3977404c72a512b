#include "Azure/StowResponse.h"

#include "Common/Exception.h"
#include "Common/Json.h"

#include <json/json.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>

namespace AzureDicom
{
namespace
{
const long HTTP_OK = 200;
const long HTTP_ACCEPTED = 202;
const long HTTP_BAD_REQUEST = 400;
const long HTTP_UNAUTHORIZED = 401;
const long HTTP_FORBIDDEN = 403;
const long HTTP_NOT_FOUND = 404;
const long HTTP_CONFLICT = 409;
const long HTTP_PAYLOAD_TOO_LARGE = 413;
const long HTTP_UNSUPPORTED_MEDIA_TYPE = 415;
const long HTTP_FAILED_DEPENDENCY = 424;
const long HTTP_TOO_MANY_REQUESTS = 429;
const long HTTP_INTERNAL_SERVER_ERROR = 500;
const long HTTP_BAD_GATEWAY = 502;
const long HTTP_SERVICE_UNAVAILABLE = 503;
const long HTTP_GATEWAY_TIMEOUT = 504;

const size_t MAX_MESSAGE_BYTES = 1024;    // excerpt of the service's text in a status message
const size_t MAX_DETAIL_BYTES = 200;      // excerpt of a parser error or of a Content-Type
const size_t MAX_ERROR_COMMENTS = 3;      // ErrorComment values quoted per instance
const unsigned int MAX_US_VALUE = 65535;  // an unsigned short (VR US)

// Maximum delay that ParseRetryAfter returns, about 31 years, so that callers can convert it to
// an integer number of milliseconds without overflow.
const double MAX_RETRY_AFTER_SECONDS = 1e9;

// A two-digit year of an RFC 850 date is in the past century when it would be more than this
// many years in the future (RFC 9110, section 5.6.7).
const int RFC850_MAX_YEARS_AHEAD = 50;

const char ELLIPSIS[] = "...";


// An attribute of a DICOM JSON dataset (PS3.18 F.2): its key, its name for messages, its VR.
struct DicomTag
{
  const char* key;
  const char* name;
  const char* vr;
};

const DicomTag REFERENCED_SOP_SEQUENCE = {"00081199", "ReferencedSOPSequence (0008,1199)", "SQ"};
const DicomTag FAILED_SOP_SEQUENCE = {"00081198", "FailedSOPSequence (0008,1198)", "SQ"};
const DicomTag REFERENCED_SOP_INSTANCE_UID = {"00081155", "ReferencedSOPInstanceUID (0008,1155)",
                                              "UI"};
const DicomTag FAILURE_REASON = {"00081197", "FailureReason (0008,1197)", "US"};
const DicomTag WARNING_REASON = {"00081196", "WarningReason (0008,1196)", "US"};
const DicomTag FAILED_ATTRIBUTES_SEQUENCE = {"00741048", "FailedAttributesSequence (0074,1048)",
                                             "SQ"};
const DicomTag ERROR_COMMENT = {"00000902", "ErrorComment (0000,0902)", "LO"};


// The entries of the response's dataset for one SOP Instance UID, which is in
// ReferencedSOPSequence, in FailedSOPSequence, or in both when failed is true.
struct ListedInstance
{
  bool failed = false;
  unsigned int failureReason = 0;
  unsigned int warningReason = 0;
  std::string details;  // ErrorComment values of the item's FailedAttributesSequence
};

struct ListedInstances
{
  std::map<std::string, ListedInstance> byUid;

  // The failed items without a SOP Instance UID. The Azure DICOM service leaves the UID out of
  // the failed item of a part that it could not parse.
  std::vector<ListedInstance> failedWithoutUid;
};


bool IsHttpWhitespace(char c)
{
  return c == ' ' || c == '\t';
}


std::string TrimHttpWhitespace(const std::string& text)
{
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end && IsHttpWhitespace(text[begin]))
  {
    begin++;
  }

  while (end > begin && IsHttpWhitespace(text[end - 1]))
  {
    end--;
  }

  return text.substr(begin, end - begin);
}


// Returns the media type of a Content-Type value in lower case, without its parameters.
std::string GetMediaType(const std::string& contentType)
{
  std::string mediaType = TrimHttpWhitespace(contentType.substr(0, contentType.find(';')));
  std::transform(mediaType.begin(), mediaType.end(), mediaType.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return mediaType;
}


std::string FormatHex(unsigned int value)
{
  char text[16];
  std::snprintf(text, sizeof(text), "0x%04X", value);
  return text;
}


bool IsUtf8Continuation(unsigned char byte)
{
  return (byte & 0xC0) == 0x80;
}


// Returns the length of the UTF-8 character that starts at text[0], or 0 when the bytes are not
// UTF-8 by RFC 3629 (no overlong forms, no surrogates, nothing above U+10FFFF). Returns -1 when
// the available bytes are a valid start of a longer character.
int GetUtf8CharacterLength(const unsigned char* text, size_t available)
{
  const unsigned char lead = text[0];
  int length = 0;
  unsigned char secondMin = 0x80;
  unsigned char secondMax = 0xBF;

  if (lead >= 0xC2 && lead <= 0xDF)
  {
    length = 2;
  }
  else if (lead >= 0xE0 && lead <= 0xEF)
  {
    length = 3;
    secondMin = (lead == 0xE0 ? 0xA0 : 0x80);
    secondMax = (lead == 0xED ? 0x9F : 0xBF);
  }
  else if (lead >= 0xF0 && lead <= 0xF4)
  {
    length = 4;
    secondMin = (lead == 0xF0 ? 0x90 : 0x80);
    secondMax = (lead == 0xF4 ? 0x8F : 0xBF);
  }
  else
  {
    return 0;
  }

  for (int i = 1; i < length; i++)
  {
    if (static_cast<size_t>(i) >= available)
    {
      return -1;
    }

    const bool valid =
        (i == 1 ? text[i] >= secondMin && text[i] <= secondMax : IsUtf8Continuation(text[i]));
    if (!valid)
    {
      return 0;
    }
  }

  return length;
}


// C0 controls, DEL, and C1 controls (U+0080 to U+009F, encoded C2 80 to C2 9F).
bool IsControlCharacter(const unsigned char* text, int length)
{
  if (length == 1)
  {
    return text[0] < 0x20 || text[0] == 0x7F;
  }

  return length == 2 && text[0] == 0xC2 && text[1] < 0xA0;
}


void ThrowNotDicomJson(const std::string& problem)
{
  throw Exception(ErrorCode::ProtocolError, "the response is not DICOM JSON: " + problem);
}


// Returns the "Value" array of an attribute, or nullptr when the attribute is absent or empty
// (PS3.18 F.2.5 leaves "Value" out of an empty attribute). Throws Exception(ProtocolError) when
// the attribute is not DICOM JSON of the expected VR.
const Json::Value* FindValues(const Json::Value& dataset, const DicomTag& tag,
                              const std::string& where)
{
  const std::string key = tag.key;
  const Json::Value* attribute = dataset.find(key.data(), key.data() + key.size());
  if (attribute == nullptr)
  {
    return nullptr;
  }

  if (!attribute->isObject())
  {
    ThrowNotDicomJson(std::string(tag.name) + " of " + where + " is not an object");
  }

  const Json::Value& vr = (*attribute)["vr"];
  if (!vr.isString() || vr.asString() != tag.vr)
  {
    const std::string found = vr.isString() ? "\"" + vr.asString() + "\"" : "no string";
    ThrowNotDicomJson(std::string(tag.name) + " of " + where + " has vr " +
                      MakePrintableExcerpt(found, MAX_DETAIL_BYTES) + ", expected \"" + tag.vr +
                      "\"");
  }

  if (!attribute->isMember("Value"))
  {
    return nullptr;
  }

  const Json::Value& values = (*attribute)["Value"];
  if (!values.isArray())
  {
    ThrowNotDicomJson("the Value of " + std::string(tag.name) + " of " + where +
                      " is not an array");
  }

  return values.empty() ? nullptr : &values;
}


// Reads the attribute's only value into number. Returns false when the attribute is absent or
// empty, throws Exception(ProtocolError) when it is not one number from 0 to 65535.
bool ReadUnsignedShort(unsigned int& number, const Json::Value& dataset, const DicomTag& tag,
                       const std::string& where)
{
  const Json::Value* values = FindValues(dataset, tag, where);
  if (values == nullptr)
  {
    return false;
  }

  const Json::Value& value = (*values)[0];
  if (values->size() != 1 || !value.isUInt() || value.asUInt() > MAX_US_VALUE)
  {
    ThrowNotDicomJson(std::string(tag.name) + " of " + where +
                      " is not one number from 0 to 65535");
  }

  number = value.asUInt();
  return true;
}


// Reads the item's ReferencedSOPInstanceUID. Returns false when it is absent or empty, throws
// Exception(ProtocolError) when it is not one string.
bool ReadInstanceUid(std::string& uid, const Json::Value& item, const std::string& where)
{
  const Json::Value* values = FindValues(item, REFERENCED_SOP_INSTANCE_UID, where);
  if (values == nullptr)
  {
    return false;
  }

  if (values->size() != 1 || !(*values)[0].isString())
  {
    ThrowNotDicomJson(std::string(REFERENCED_SOP_INSTANCE_UID.name) + " of " + where +
                      " is not one string");
  }

  // A UID padded to an even length, as in a DICOM file, is still the same UID.
  uid = (*values)[0].asString();
  while (!uid.empty() && (uid.back() == '\0' || uid.back() == ' '))
  {
    uid.pop_back();
  }

  return !uid.empty();
}


// Returns the values of a lenient lookup: nullptr when the attribute is absent or malformed.
const Json::Value* FindValuesIfWellFormed(const Json::Value& dataset, const DicomTag& tag)
{
  const std::string key = tag.key;
  const Json::Value* attribute = dataset.find(key.data(), key.data() + key.size());
  if (attribute == nullptr || !attribute->isObject())
  {
    return nullptr;
  }

  const Json::Value& values = (*attribute)["Value"];
  return values.isArray() ? &values : nullptr;
}


// Joins the first ErrorComment values of the item's FailedAttributesSequence, where the Azure
// DICOM service explains which attribute failed validation. The comments are only an aid to the
// reader, so a malformed FailedAttributesSequence is skipped instead of rejecting the response.
std::string ReadErrorComments(const Json::Value& item)
{
  const Json::Value* attributes = FindValuesIfWellFormed(item, FAILED_ATTRIBUTES_SEQUENCE);
  if (attributes == nullptr)
  {
    return "";
  }

  std::string comments;
  size_t count = 0;
  for (const Json::Value& attribute : *attributes)
  {
    const Json::Value* values =
        attribute.isObject() ? FindValuesIfWellFormed(attribute, ERROR_COMMENT) : nullptr;
    if (values == nullptr || values->empty() || !(*values)[0].isString())
    {
      continue;
    }

    if (count == MAX_ERROR_COMMENTS)
    {
      comments += " | ...";
      break;
    }

    comments += (count == 0 ? "" : " | ") + (*values)[0].asString();
    count++;
  }

  return MakePrintableExcerpt(comments, MAX_MESSAGE_BYTES);
}


void ReadSequence(ListedInstances& listed, const Json::Value& dataset, const DicomTag& sequence,
                  bool isFailedSequence)
{
  const Json::Value* items = FindValues(dataset, sequence, "the dataset");
  if (items == nullptr)
  {
    return;
  }

  for (Json::ArrayIndex i = 0; i < items->size(); i++)
  {
    const std::string where = "item " + std::to_string(i + 1) + " of " + sequence.name;
    const Json::Value& item = (*items)[i];
    if (!item.isObject())
    {
      ThrowNotDicomJson(where + " is not an object");
    }

    unsigned int failureReason = 0;
    const bool hasFailureReason = ReadUnsignedShort(failureReason, item, FAILURE_REASON, where);
    if (isFailedSequence && !hasFailureReason)
    {
      ThrowNotDicomJson(where + " has no " + FAILURE_REASON.name);
    }

    unsigned int warningReason = 0;
    ReadUnsignedShort(warningReason, item, WARNING_REASON, where);

    std::string uid;
    if (!ReadInstanceUid(uid, item, where))
    {
      if (isFailedSequence)
      {
        ListedInstance entry;
        entry.failed = true;
        entry.failureReason = failureReason;
        entry.warningReason = warningReason;
        entry.details = ReadErrorComments(item);
        listed.failedWithoutUid.push_back(entry);
      }

      continue;
    }

    ListedInstance& entry = listed.byUid[uid];
    if (warningReason != 0 && entry.warningReason == 0)
    {
      entry.warningReason = warningReason;
    }

    if (isFailedSequence && !entry.failed)
    {
      entry.failed = true;  // the first failure listed for a UID is the one kept
      entry.failureReason = failureReason;
      entry.details = ReadErrorComments(item);
    }
    else if (!isFailedSequence && entry.details.empty())
    {
      entry.details = ReadErrorComments(item);
    }
  }
}


Json::Value ParseJson(const std::string& body)
{
  Json::CharReaderBuilder builder;
  Json::CharReaderBuilder::strictMode(&builder.settings_);
  builder["stackLimit"] = MAX_JSON_NESTING;
  builder["skipBom"] = true;
  const std::unique_ptr<Json::CharReader> reader(builder.newCharReader());

  Json::Value root;
  std::string errors;
  bool parsed = false;
  try
  {
    parsed = reader->parse(body.data(), body.data() + body.size(), &root, &errors);
  }
  catch (const Json::Exception& e)  // JsonCpp throws when the nesting exceeds stackLimit
  {
    errors = e.what();
  }

  if (!parsed)
  {
    if (errors.compare(0, 2, "* ") == 0)
    {
      errors.erase(0, 2);
    }

    ThrowNotDicomJson(MakePrintableExcerpt(errors, MAX_DETAIL_BYTES));
  }

  return root;
}


// Gives a failed item without a UID to the one sent instance that the response does not list,
// when there is exactly one of each. Otherwise the item matches no instance, and the unlisted
// instances count as not confirmed.
void MatchFailureWithoutUid(ListedInstances& listed, const std::vector<std::string>& sentUids)
{
  if (listed.failedWithoutUid.size() != 1)
  {
    return;
  }

  std::vector<std::string> unlisted;
  for (const std::string& uid : sentUids)
  {
    if (listed.byUid.count(uid) == 0)
    {
      unlisted.push_back(uid);
    }
  }

  if (unlisted.size() == 1)
  {
    listed.byUid[unlisted.front()] = listed.failedWithoutUid.front();
  }
}


// Reads the dataset of a STOW-RS response to a request that sent sentUids, and matches a failed
// item without a UID (MatchFailureWithoutUid). Throws Exception(ProtocolError), with a message
// that names the problem, when the response is not DICOM JSON or lists neither sequence.
ListedInstances ReadListedInstances(const std::string& contentType, const std::string& body,
                                    const std::vector<std::string>& sentUids)
{
  const std::string mediaType = GetMediaType(contentType);
  if (mediaType != "application/dicom+json" && mediaType != "application/json")
  {
    ThrowNotDicomJson(contentType.empty()
                          ? "it has no Content-Type, expected application/dicom+json"
                          : "its Content-Type is \"" +
                                MakePrintableExcerpt(contentType, MAX_DETAIL_BYTES) +
                                "\", expected application/dicom+json");
  }

  const Json::Value root = ParseJson(body);
  if (!root.isObject())
  {
    ThrowNotDicomJson("its root is an array, expected an object");
  }

  if (!root.isMember(REFERENCED_SOP_SEQUENCE.key) && !root.isMember(FAILED_SOP_SEQUENCE.key))
  {
    throw Exception(ErrorCode::ProtocolError, std::string("the response lists neither ") +
                                                  REFERENCED_SOP_SEQUENCE.name + " nor " +
                                                  FAILED_SOP_SEQUENCE.name);
  }

  ListedInstances listed;
  ReadSequence(listed, root, REFERENCED_SOP_SEQUENCE, false);
  ReadSequence(listed, root, FAILED_SOP_SEQUENCE, true);
  MatchFailureWithoutUid(listed, sentUids);
  return listed;
}


std::string DescribeFailureReason(unsigned int reason)
{
  switch (reason)
  {
    case REASON_ALREADY_EXISTS:
      return "already stored at the service (45070)";
    case REASON_BEING_CREATED:
      return "being created by another request (45071)";
    case REASON_VALIDATION_FAILED:
      return "validation failed (43264)";
    case REASON_STUDY_UID_MISMATCH:
      return "study instance UID mismatch (43265)";
    case REASON_PROCESSING_FAILURE:
      return "processing failure (272)";
    default:
      return "failure reason " + std::to_string(reason) + " (" + FormatHex(reason) + ")";
  }
}


std::string DescribeWarningReason(unsigned int reason)
{
  switch (reason)
  {
    case WARNING_COERCED:
      return "stored with warning 45063 (the data set does not match its SOP class)";
    case WARNING_ELEMENTS_DISCARDED:
      return "stored with warning 1 (the data set has validation warnings)";
    default:
      return "stored with warning " + std::to_string(reason) + " (" + FormatHex(reason) + ")";
  }
}


std::string AppendDetails(const std::string& description, const std::string& details)
{
  return details.empty() ? description : description + ": " + details;
}


InstanceResult MakeFailedResult(const ListedInstance& listed)
{
  InstanceResult result;
  result.failureReason = listed.failureReason;
  result.warningReason = listed.warningReason;
  result.message = AppendDetails(DescribeFailureReason(listed.failureReason), listed.details);

  switch (listed.failureReason)
  {
    case REASON_ALREADY_EXISTS:
      result.disposition = InstanceDisposition::AlreadyPresent;
      break;
    case REASON_BEING_CREATED:
      result.disposition = InstanceDisposition::RetryLater;
      break;
    case REASON_PROCESSING_FAILURE:
      result.disposition = InstanceDisposition::RetryBackoff;
      break;
    default:
      result.disposition = InstanceDisposition::Failed;
      break;
  }

  return result;
}


InstanceResult MakeStoredResult(const ListedInstance& listed)
{
  InstanceResult result;
  result.disposition = InstanceDisposition::Mirrored;
  result.warningReason = listed.warningReason;
  if (listed.warningReason != 0)
  {
    result.message = AppendDetails(DescribeWarningReason(listed.warningReason), listed.details);
  }

  return result;
}


InstanceResult MakeResult(InstanceDisposition disposition, const std::string& message)
{
  InstanceResult result;
  result.disposition = disposition;
  result.message = message;
  return result;
}


// 200, 202 and 409: one outcome per instance, from the sequences of the response.
void InterpretStoreResponse(StowResponse& response, const std::string& contentType,
                            const std::string& body, const std::vector<std::string>& sentUids)
{
  ListedInstances listed;
  try
  {
    listed = ReadListedInstances(contentType, body, sentUids);
  }
  catch (const std::exception& e)  // also std::bad_alloc from a huge response
  {
    // Whatever its status, a response that cannot be read confirms nothing.
    response.message = e.what();
    for (const std::string& uid : sentUids)
    {
      response.instances[uid] = MakeResult(InstanceDisposition::RetryLater, e.what());
    }

    return;
  }

  for (const std::string& uid : sentUids)
  {
    auto found = listed.byUid.find(uid);
    if (found == listed.byUid.end())
    {
      response.instances[uid] =
          MakeResult(InstanceDisposition::RetryLater, "not confirmed by the service");
    }
    else if (found->second.failed)
    {
      // An instance in both sequences is a contradiction. Its failure is the outcome that is
      // safe to act on: it is retried or reported, while Mirrored would never be checked again.
      response.instances[uid] = MakeFailedResult(found->second);
    }
    else
    {
      response.instances[uid] = MakeStoredResult(found->second);
    }
  }
}


// 400 and 415: the request is malformed, so every instance fails with the service's message. An
// instance that a DICOM JSON body lists as stored is the exception: Orthanc's DICOMweb plugin
// responds with 400 when one part cannot be parsed, but stores and references the others.
void InterpretRejectedRequest(StowResponse& response, long httpStatus,
                              const std::string& contentType, const std::string& body,
                              const std::vector<std::string>& sentUids)
{
  const std::string serviceText = MakePrintableExcerpt(body, MAX_MESSAGE_BYTES);
  const std::string description = httpStatus == HTTP_UNSUPPORTED_MEDIA_TYPE
                                      ? "the service rejected the media type of the request"
                                      : "the service rejected the request as malformed";
  response.message = AppendDetails(description, serviceText);

  ListedInstances listed;
  try
  {
    listed = ReadListedInstances(contentType, body, sentUids);
  }
  catch (const std::exception&)
  {
    // A plain-text error is the usual body of a 400, so the service's text is the message.
  }

  for (const std::string& uid : sentUids)
  {
    InstanceResult result = MakeResult(InstanceDisposition::Failed, response.message);
    auto found = listed.byUid.find(uid);
    if (found != listed.byUid.end() && found->second.failed)
    {
      result.failureReason = found->second.failureReason;
      result.warningReason = found->second.warningReason;
      result.message =
          AppendDetails(description + ", " + DescribeFailureReason(found->second.failureReason),
                        found->second.details);
    }
    else if (found != listed.byUid.end())
    {
      result = MakeStoredResult(found->second);
    }

    response.instances[uid] = result;
  }
}


BatchDisposition ClassifyBatchStatus(long httpStatus)
{
  switch (httpStatus)
  {
    case HTTP_UNAUTHORIZED:
      return BatchDisposition::TokenRejected;
    case HTTP_FORBIDDEN:
      return BatchDisposition::Forbidden;
    case HTTP_NOT_FOUND:
    case HTTP_FAILED_DEPENDENCY:
      return BatchDisposition::WrongEndpoint;
    case HTTP_PAYLOAD_TOO_LARGE:
      return BatchDisposition::TooLarge;
    default:
      return BatchDisposition::Transient;
  }
}


std::string DescribeBatchStatus(long httpStatus)
{
  switch (httpStatus)
  {
    case HTTP_UNAUTHORIZED:
      return "the service rejected the access token";
    case HTTP_FORBIDDEN:
      return "the principal is not allowed to store instances";
    case HTTP_NOT_FOUND:
      return "the STOW-RS URL was not found";
    case HTTP_FAILED_DEPENDENCY:
      return "the service cannot reach a resource that it depends on";
    case HTTP_PAYLOAD_TOO_LARGE:
      return "the request is too large for the service";
    case HTTP_TOO_MANY_REQUESTS:
      return "the service is throttling requests";
    case HTTP_INTERNAL_SERVER_ERROR:
      return "internal server error";
    case HTTP_BAD_GATEWAY:
      return "bad gateway";
    case HTTP_SERVICE_UNAVAILABLE:
      return "the service is unavailable";
    case HTTP_GATEWAY_TIMEOUT:
      return "gateway timeout";
    default:
      return "unexpected HTTP status " + std::to_string(httpStatus);
  }
}


int64_t GetNowSeconds()
{
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}
}  // namespace


StowResponse ParseStowResponse(long httpStatus, const std::string& contentType,
                               const std::string& body, const std::string& retryAfter,
                               const std::vector<std::string>& sentUids)
{
  StowResponse response;
  response.retryAfterSeconds = ParseRetryAfter(retryAfter, GetNowSeconds());

  if (httpStatus == HTTP_OK || httpStatus == HTTP_ACCEPTED || httpStatus == HTTP_CONFLICT)
  {
    response.disposition = BatchDisposition::PerInstance;
    InterpretStoreResponse(response, contentType, body, sentUids);
  }
  else if (httpStatus == HTTP_BAD_REQUEST || httpStatus == HTTP_UNSUPPORTED_MEDIA_TYPE)
  {
    response.disposition = BatchDisposition::PerInstance;
    InterpretRejectedRequest(response, httpStatus, contentType, body, sentUids);
  }
  else
  {
    response.disposition = ClassifyBatchStatus(httpStatus);
    const std::string serviceText = MakePrintableExcerpt(body, MAX_MESSAGE_BYTES);
    response.message = serviceText.empty() ? DescribeBatchStatus(httpStatus) : serviceText;
  }

  return response;
}


std::string MakePrintableExcerpt(const std::string& text, size_t maxBytes)
{
  const size_t end = std::min(text.size(), maxBytes);
  const bool isCut = end < text.size();
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(text.data());

  std::string excerpt;
  excerpt.reserve(end + sizeof(ELLIPSIS));
  bool pendingSpace = false;
  size_t position = 0;
  while (position < end)
  {
    int length =
        bytes[position] < 0x80 ? 1 : GetUtf8CharacterLength(bytes + position, end - position);
    if (length < 0 && isCut)
    {
      break;  // the cut falls inside a character
    }

    if (length == 1 && bytes[position] == ' ')
    {
      pendingSpace = true;
      position++;
      continue;
    }

    if (length > 0 && IsControlCharacter(bytes + position, length))
    {
      pendingSpace = true;
      position += length;
      continue;
    }

    if (pendingSpace && !excerpt.empty())
    {
      excerpt.push_back(' ');
    }

    pendingSpace = false;
    if (length <= 0)
    {
      excerpt.push_back('?');
      position++;
    }
    else
    {
      excerpt.append(text, position, length);
      position += length;
    }
  }

  if (isCut)
  {
    excerpt.append(ELLIPSIS);
  }

  return excerpt;
}


namespace
{
const char* const SHORT_DAY_NAMES[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
const char* const LONG_DAY_NAMES[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                      "Friday", "Saturday", "Sunday"};
const char* const MONTH_NAMES[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
const int SECONDS_PER_DAY = 86400;
const int SECONDS_PER_HOUR = 3600;
const int SECONDS_PER_MINUTE = 60;
const int YEARS_PER_CENTURY = 100;


struct CivilTime
{
  int year = 0;
  int month = 0;  // 1 to 12
  int day = 0;
  int hour = 0;
  int minute = 0;
  int second = 0;
};


// A position in an HTTP date, for the three formats of RFC 9110, section 5.6.7. Every method
// consumes its text only when it matches, and returns whether it did.
class DateCursor
{
public:
  explicit DateCursor(const std::string& text) : text_(text) {}

  bool AcceptLiteral(const char* literal)
  {
    const std::string expected = literal;
    if (text_.compare(position_, expected.size(), expected) != 0)
    {
      return false;
    }

    position_ += expected.size();
    return true;
  }

  bool ReadDigits(size_t count, int& value)
  {
    if (position_ + count > text_.size())
    {
      return false;
    }

    int result = 0;
    for (size_t i = 0; i < count; i++)
    {
      const char c = text_[position_ + i];
      if (c < '0' || c > '9')
      {
        return false;
      }

      result = result * 10 + (c - '0');
    }

    position_ += count;
    value = result;
    return true;
  }

  // Reads one of the names, which are case-sensitive (RFC 9110). Returns its index, or -1.
  template <size_t N>
  int ReadName(const char* const (&names)[N])
  {
    size_t end = position_;
    while (end < text_.size() && std::isalpha(static_cast<unsigned char>(text_[end])))
    {
      end++;
    }

    const std::string word = text_.substr(position_, end - position_);
    for (size_t i = 0; i < N; i++)
    {
      if (word == names[i])
      {
        position_ = end;
        return static_cast<int>(i);
      }
    }

    return -1;
  }

  bool ReadTimeOfDay(CivilTime& time)
  {
    return ReadDigits(2, time.hour) && AcceptLiteral(":") && ReadDigits(2, time.minute) &&
           AcceptLiteral(":") && ReadDigits(2, time.second);
  }

  bool ReadMonth(CivilTime& time)
  {
    time.month = ReadName(MONTH_NAMES) + 1;
    return time.month > 0;
  }

  bool IsAtEnd() const
  {
    return position_ == text_.size();
  }

private:
  const std::string& text_;
  size_t position_ = 0;
};


// IMF-fixdate, the preferred format: "Sun, 06 Nov 1994 08:49:37 GMT".
bool ParseImfFixdate(CivilTime& time, const std::string& text)
{
  DateCursor cursor(text);
  return cursor.ReadName(SHORT_DAY_NAMES) >= 0 && cursor.AcceptLiteral(", ") &&
         cursor.ReadDigits(2, time.day) && cursor.AcceptLiteral(" ") && cursor.ReadMonth(time) &&
         cursor.AcceptLiteral(" ") && cursor.ReadDigits(4, time.year) &&
         cursor.AcceptLiteral(" ") && cursor.ReadTimeOfDay(time) && cursor.AcceptLiteral(" GMT") &&
         cursor.IsAtEnd();
}


// The obsolete RFC 850 format with a two-digit year: "Sunday, 06-Nov-94 08:49:37 GMT".
bool ParseRfc850Date(CivilTime& time, const std::string& text, int currentYear)
{
  DateCursor cursor(text);
  int twoDigitYear = 0;
  const bool matches = cursor.ReadName(LONG_DAY_NAMES) >= 0 && cursor.AcceptLiteral(", ") &&
                       cursor.ReadDigits(2, time.day) && cursor.AcceptLiteral("-") &&
                       cursor.ReadMonth(time) && cursor.AcceptLiteral("-") &&
                       cursor.ReadDigits(2, twoDigitYear) && cursor.AcceptLiteral(" ") &&
                       cursor.ReadTimeOfDay(time) && cursor.AcceptLiteral(" GMT") &&
                       cursor.IsAtEnd();
  if (!matches)
  {
    return false;
  }

  time.year = currentYear - currentYear % YEARS_PER_CENTURY + twoDigitYear;
  if (time.year > currentYear + RFC850_MAX_YEARS_AHEAD)
  {
    time.year -= YEARS_PER_CENTURY;
  }

  return true;
}


// The obsolete asctime() format, day padded with a space: "Sun Nov  6 08:49:37 1994".
bool ParseAsctimeDate(CivilTime& time, const std::string& text)
{
  DateCursor cursor(text);
  if (!(cursor.ReadName(SHORT_DAY_NAMES) >= 0 && cursor.AcceptLiteral(" ") &&
        cursor.ReadMonth(time) && cursor.AcceptLiteral(" ")))
  {
    return false;
  }

  const bool hasDay =
      cursor.AcceptLiteral(" ") ? cursor.ReadDigits(1, time.day) : cursor.ReadDigits(2, time.day);
  return hasDay && cursor.AcceptLiteral(" ") && cursor.ReadTimeOfDay(time) &&
         cursor.AcceptLiteral(" ") && cursor.ReadDigits(4, time.year) && cursor.IsAtEnd();
}


bool IsLeapYear(int year)
{
  return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}


bool IsValidCivilTime(const CivilTime& time)
{
  static const int daysPerMonth[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (time.month < 1 || time.month > 12 || time.day < 1)
  {
    return false;
  }

  const int monthDays =
      daysPerMonth[time.month - 1] + (time.month == 2 && IsLeapYear(time.year) ? 1 : 0);

  // RFC 9110 allows a leap second (60).
  return time.day <= monthDays && time.hour <= 23 && time.minute <= 59 && time.second <= 60;
}


// Days from 1970-01-01 to a date of the proleptic Gregorian calendar, by Howard Hinnant's
// days_from_civil algorithm (eras of 400 years that start on 1 March).
int64_t GetDaysSinceEpoch(int year, int month, int day)
{
  const int64_t shiftedYear = year - (month <= 2 ? 1 : 0);
  const int64_t era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400;
  const int64_t yearOfEra = shiftedYear - era * 400;
  const int64_t dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const int64_t dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}


int64_t GetSecondsSinceEpoch(const CivilTime& time)
{
  return GetDaysSinceEpoch(time.year, time.month, time.day) * SECONDS_PER_DAY +
         time.hour * SECONDS_PER_HOUR + time.minute * SECONDS_PER_MINUTE + time.second;
}


int GetCurrentYear(int64_t nowSeconds)
{
  const time_t now = static_cast<time_t>(nowSeconds);
  struct tm parts = {};
  if (gmtime_r(&now, &parts) == nullptr)
  {
    return 1970;
  }

  return parts.tm_year + 1900;
}


bool IsDeltaSeconds(const std::string& text)
{
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}
}  // namespace


double ParseRetryAfter(const std::string& value, int64_t nowSeconds)
{
  const std::string text = TrimHttpWhitespace(value);
  if (IsDeltaSeconds(text))
  {
    double seconds = 0;
    for (char c : text)
    {
      seconds = std::min(seconds * 10 + (c - '0'), MAX_RETRY_AFTER_SECONDS);
    }

    return seconds;
  }

  CivilTime time;
  const bool parsed = ParseImfFixdate(time, text) ||
                      ParseRfc850Date(time, text, GetCurrentYear(nowSeconds)) ||
                      ParseAsctimeDate(time, text);
  if (!parsed || !IsValidCivilTime(time))
  {
    return -1;
  }

  const double delay = static_cast<double>(GetSecondsSinceEpoch(time) - nowSeconds);
  return std::min(std::max(delay, 0.0), MAX_RETRY_AFTER_SECONDS);
}
}  // namespace AzureDicom
