#include "Azure/MultipartWriter.h"

#include "Common/Exception.h"

#include "TestSupport.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace AzureDicom;

namespace
{
const std::string CRLF = "\r\n";


struct ParsedPart
{
  std::map<std::string, std::string> headers;  // names as written
  std::string content;
};


struct ParsedBody
{
  std::string mediaType;
  std::map<std::string, std::string> parameters;  // unquoted values
  std::vector<ParsedPart> parts;
};


std::string Trim(const std::string& text)
{
  const size_t begin = text.find_first_not_of(' ');
  if (begin == std::string::npos)
  {
    return "";
  }

  const size_t end = text.find_last_not_of(' ');
  return text.substr(begin, end - begin + 1);
}


// Splits a Content-Type value into its media type and its parameters.
void ParseContentType(ParsedBody& parsed, const std::string& contentType)
{
  size_t start = 0;
  bool isMediaType = true;
  while (start <= contentType.size())
  {
    size_t end = contentType.find(';', start);
    if (end == std::string::npos)
    {
      end = contentType.size();
    }

    const std::string field = Trim(contentType.substr(start, end - start));
    if (isMediaType)
    {
      parsed.mediaType = field;
      isMediaType = false;
    }
    else
    {
      const size_t equals = field.find('=');
      ASSERT_NE(equals, std::string::npos) << "parameter without '=': " << field;
      std::string value = field.substr(equals + 1);
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      {
        value = value.substr(1, value.size() - 2);
      }

      parsed.parameters[field.substr(0, equals)] = value;
    }

    start = end + 1;
  }
}


void ParsePart(ParsedPart& part, const std::string& text)
{
  const size_t headersEnd = text.find(CRLF + CRLF);
  ASSERT_NE(headersEnd, std::string::npos) << "part without the blank line after its headers";

  size_t start = 0;
  while (start < headersEnd)
  {
    size_t end = text.find(CRLF, start);
    if (end > headersEnd)
    {
      end = headersEnd;
    }

    const std::string line = text.substr(start, end - start);
    const size_t colon = line.find(':');
    ASSERT_NE(colon, std::string::npos) << "header line without ':': " << line;
    part.headers[line.substr(0, colon)] = Trim(line.substr(colon + 1));
    start = end + CRLF.size();
  }

  part.content = text.substr(headersEnd + 2 * CRLF.size());
}


// A parser of RFC 2046 multipart bodies that is independent of the writer: every delimiter is
// CRLF "--" boundary, the first one has no CRLF before it, and the close delimiter ends with "--".
// This writer adds no preamble and no epilogue beyond the final CRLF, so the parser requires that.
void ParseMultipart(ParsedBody& parsed, const std::string& contentType, const std::string& body)
{
  ParseContentType(parsed, contentType);
  ASSERT_TRUE(parsed.parameters.count("boundary"));
  const std::string dashBoundary = "--" + parsed.parameters["boundary"];

  ASSERT_EQ(body.compare(0, dashBoundary.size() + 2, dashBoundary + CRLF), 0)
      << "the body does not start with the first delimiter";
  size_t partStart = dashBoundary.size() + CRLF.size();

  for (;;)
  {
    const size_t delimiter = body.find(CRLF + dashBoundary, partStart);
    ASSERT_NE(delimiter, std::string::npos) << "part without a delimiter after it";

    ParsedPart part;
    ParsePart(part, body.substr(partStart, delimiter - partStart));
    parsed.parts.push_back(part);

    const size_t afterDelimiter = delimiter + CRLF.size() + dashBoundary.size();
    if (body.compare(afterDelimiter, 2, "--") == 0)
    {
      ASSERT_EQ(body.substr(afterDelimiter + 2), CRLF) << "text after the close delimiter";
      return;
    }

    ASSERT_EQ(body.compare(afterDelimiter, 2, CRLF), 0) << "delimiter not followed by CRLF";
    partStart = afterDelimiter + CRLF.size();
  }
}


std::string GetBoundary(const MultipartWriter& writer)
{
  ParsedBody parsed;
  ParseContentType(parsed, writer.GetContentType());
  return parsed.parameters["boundary"];
}


std::string MakeRandomBytes(size_t size, unsigned int seed)
{
  std::mt19937 generator(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::string bytes(size, '\0');
  for (char& c : bytes)
  {
    c = static_cast<char>(byte(generator));
  }

  return bytes;
}


void ExpectRoundTrip(const std::vector<std::string>& instances)
{
  MultipartWriter writer;
  for (const std::string& instance : instances)
  {
    writer.AddPart(instance);
  }

  const std::string body = writer.Finish();

  ParsedBody parsed;
  ParseMultipart(parsed, writer.GetContentType(), body);
  ASSERT_EQ(parsed.parts.size(), instances.size());
  for (size_t i = 0; i < instances.size(); i++)
  {
    EXPECT_EQ(parsed.parts[i].headers.size(), 1u) << "part " << i;
    EXPECT_EQ(parsed.parts[i].headers["Content-Type"], "application/dicom") << "part " << i;
    EXPECT_EQ(parsed.parts[i].content, instances[i]) << "part " << i;
  }
}


ErrorCode GetErrorCode(const std::function<void()>& action)
{
  try
  {
    action();
  }
  catch (const Exception& e)
  {
    return e.GetCode();
  }

  ADD_FAILURE() << "no AzureDicom::Exception was thrown";
  return ErrorCode::BadRequest;
}
}  // namespace


TEST(MultipartWriterTest, ContentTypeParameters)
{
  MultipartWriter writer;
  ParsedBody parsed;
  ParseContentType(parsed, writer.GetContentType());

  EXPECT_EQ(parsed.mediaType, "multipart/related");
  EXPECT_EQ(parsed.parameters["type"], "application/dicom");
  EXPECT_EQ(parsed.parameters.count("start"), 0u);
  EXPECT_EQ(parsed.parameters.size(), 2u);
}


TEST(MultipartWriterTest, BoundaryIs128BitsInHex)
{
  MultipartWriter writer;
  const std::string boundary = GetBoundary(writer);

  EXPECT_EQ(boundary.size(), 32u);
  EXPECT_EQ(boundary.find_first_not_of("0123456789abcdef"), std::string::npos);
}


TEST(MultipartWriterTest, BoundariesDiffer)
{
  std::set<std::string> boundaries;
  for (int i = 0; i < 1000; i++)
  {
    MultipartWriter writer;
    boundaries.insert(GetBoundary(writer));
  }

  EXPECT_EQ(boundaries.size(), 1000u);
}


TEST(MultipartWriterTest, ExactLayoutOfOnePart)
{
  MultipartWriter writer;
  writer.AddPart("DICM");
  const std::string boundary = GetBoundary(writer);

  EXPECT_EQ(writer.Finish(), "--" + boundary +
                                 "\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n--" +
                                 boundary + "--\r\n");
}


TEST(MultipartWriterTest, RoundTripOnePart)
{
  ExpectRoundTrip({"a DICOM instance"});
}


TEST(MultipartWriterTest, RoundTripSeveralParts)
{
  ExpectRoundTrip({"first", "second", "third", "fourth"});
}


TEST(MultipartWriterTest, RoundTripControlBytes)
{
  const std::string nul(1, '\0');
  ExpectRoundTrip({"\r\n", "\r\n\r\n", nul + "\r\n" + nul, "--\r\n--", "\r\n--", "ends with CR\r",
                   "\nstarts with LF", std::string(300, '\0')});
}


TEST(MultipartWriterTest, RoundTripEmptyPart)
{
  ExpectRoundTrip({"", "x", ""});
}


TEST(MultipartWriterTest, RoundTripRandomBinary)
{
  ExpectRoundTrip({MakeRandomBytes(1, 1), MakeRandomBytes(4096, 2), MakeRandomBytes(5 << 20, 3)});
}


TEST(MultipartWriterTest, PartCount)
{
  MultipartWriter writer;
  EXPECT_EQ(writer.GetPartCount(), 0u);

  writer.AddPart("a");
  writer.AddPart("b");
  EXPECT_EQ(writer.GetPartCount(), 2u);
}


TEST(MultipartWriterTest, PartWithBoundaryThrows)
{
  MultipartWriter writer;
  writer.AddPart("good");
  const std::string boundary = GetBoundary(writer);

  EXPECT_EQ(GetErrorCode([&] { writer.AddPart("x--" + boundary + "y"); }),
            ErrorCode::InternalError);
  EXPECT_EQ(GetErrorCode([&] { writer.AddPart("--" + boundary); }), ErrorCode::InternalError);
  EXPECT_EQ(writer.GetPartCount(), 1u);

  const std::string body = writer.Finish();
  ParsedBody parsed;
  ParseMultipart(parsed, writer.GetContentType(), body);
  ASSERT_EQ(parsed.parts.size(), 1u);
  EXPECT_EQ(parsed.parts[0].content, "good");
}


TEST(MultipartWriterTest, BoundaryWithoutDashesAccepted)
{
  MultipartWriter writer;
  const std::string boundary = GetBoundary(writer);
  const std::string instance = "-" + boundary + boundary.substr(1);

  writer.AddPart(instance);

  ParsedBody parsed;
  ParseMultipart(parsed, writer.GetContentType(), writer.Finish());
  ASSERT_EQ(parsed.parts.size(), 1u);
  EXPECT_EQ(parsed.parts[0].content, instance);
}


TEST(MultipartWriterTest, FinishWithoutPartsThrows)
{
  MultipartWriter writer;

  EXPECT_EQ(GetErrorCode([&] { writer.Finish(); }), ErrorCode::InternalError);
}


TEST(MultipartWriterTest, FinishTwiceReturnsSameBody)
{
  MultipartWriter writer;
  writer.AddPart("a");
  const std::string first = writer.Finish();

  EXPECT_EQ(writer.Finish(), first);
}


TEST(MultipartWriterTest, AddPartAfterFinishThrows)
{
  MultipartWriter writer;
  writer.AddPart("a");
  const std::string body = writer.Finish();

  EXPECT_EQ(GetErrorCode([&] { writer.AddPart("b"); }), ErrorCode::InternalError);
  EXPECT_EQ(writer.Finish(), body);
}


TEST(MultipartWriterTest, BufferIsNotCopied)
{
  auto buffer = std::make_unique<StringBuffer>(std::string(1000, 'x'));
  const char* data = buffer->GetData();
  MultipartWriter writer;
  writer.AddPart(std::move(buffer));
  writer.Close();

  bool found = false;
  for (const BodySegment& segment : writer.GetBody().GetSegments())
  {
    found = found || (segment.data == data && segment.size == 1000);
  }
  EXPECT_TRUE(found);
}


TEST(MultipartWriterTest, BodySizeIsSumOfSegments)
{
  MultipartWriter writer;
  writer.AddPart("first instance");
  writer.AddPart("second");
  writer.Close();

  uint64_t size = 0;
  for (const BodySegment& segment : writer.GetBody().GetSegments())
  {
    size += segment.size;
  }
  EXPECT_EQ(writer.GetBody().GetSize(), size);
  EXPECT_EQ(writer.Finish().size(), size);
}


// Buffers that a writer owns, and the old single-string layout of the body.

namespace
{
using CountedBuffer = AzureDicom::Testing::CountedBuffer;


// The body as the writer built it in one std::string before it held the parts in segments.
std::string MakeSingleStringBody(const std::string& boundary,
                                 const std::vector<std::string>& instances)
{
  std::string body;
  for (const std::string& instance : instances)
  {
    body += "--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n" + instance + "\r\n";
  }
  return body + "--" + boundary + "--\r\n";
}


size_t CountSegmentsAt(const RequestBody& body, const char* data, size_t size)
{
  size_t count = 0;
  for (const BodySegment& segment : body.GetSegments())
  {
    if (segment.data == data && segment.size == size)
    {
      count++;
    }
  }
  return count;
}
}  // namespace


TEST(MultipartWriterTest, BufferLivesWithWriter)
{
  int liveCount = 0;
  const char* data = nullptr;
  {
    auto buffer = std::make_unique<CountedBuffer>("DICM instance", liveCount);
    data = buffer->GetData();

    MultipartWriter writer;
    writer.AddPart(std::move(buffer));
    writer.Close();
    EXPECT_EQ(liveCount, 1);

    EXPECT_EQ(CountSegmentsAt(writer.GetBody(), data, 13), 1u);
    EXPECT_NE(writer.GetBody().ToString().find("\r\n\r\nDICM instance\r\n--"), std::string::npos);
  }

  EXPECT_EQ(liveCount, 0);
}


TEST(MultipartWriterTest, EachBufferIsOneSegment)
{
  int liveCount = 0;
  std::vector<const char*> addresses;
  MultipartWriter writer;
  for (const std::string instance : {"first", "", "third"})
  {
    auto buffer = std::make_unique<CountedBuffer>(instance, liveCount);
    addresses.push_back(buffer->GetData());
    writer.AddPart(std::move(buffer));
  }
  writer.Close();

  EXPECT_EQ(liveCount, 3);
  EXPECT_EQ(CountSegmentsAt(writer.GetBody(), addresses[0], 5), 1u);
  EXPECT_EQ(CountSegmentsAt(writer.GetBody(), addresses[1], 0), 1u);
  EXPECT_EQ(CountSegmentsAt(writer.GetBody(), addresses[2], 5), 1u);

  // Each part adds its delimiter and its instance, and Close() adds the close delimiter.
  EXPECT_EQ(writer.GetBody().GetSegments().size(), 7u);
}


TEST(MultipartWriterTest, LargeBufferIsNotCopied)
{
  const std::string instance = MakeRandomBytes(4 << 20, 7);
  auto buffer = std::make_unique<StringBuffer>(instance);
  const char* data = buffer->GetData();

  MultipartWriter writer;
  writer.AddPart("small");
  writer.AddPart(std::move(buffer));
  writer.Close();

  EXPECT_EQ(CountSegmentsAt(writer.GetBody(), data, instance.size()), 1u);
  EXPECT_EQ(writer.GetBody().ToString(),
            MakeSingleStringBody(GetBoundary(writer), {"small", instance}));
}


TEST(MultipartWriterTest, JoinedBodyMatchesSingleString)
{
  const std::vector<std::vector<std::string>> cases = {
      {"DICM"},
      {"first", "second", "third"},
      {"", "x", ""},
      {std::string(3, '\0'), "\r\n--\r\n", MakeRandomBytes(70000, 11)}};

  for (size_t i = 0; i < cases.size(); i++)
  {
    SCOPED_TRACE("case " + std::to_string(i));
    MultipartWriter writer;
    for (size_t part = 0; part < cases[i].size(); part++)
    {
      // The three overloads must build the same bytes.
      const std::string& instance = cases[i][part];
      switch (part % 3)
      {
        case 0:
          writer.AddPart(std::make_unique<StringBuffer>(instance));
          break;
        case 1:
          writer.AddPart(instance);
          break;
        default:
          writer.AddPart(instance.data(), instance.size());
          break;
      }
    }

    const std::string expected = MakeSingleStringBody(GetBoundary(writer), cases[i]);
    writer.Close();
    EXPECT_EQ(writer.GetBody().GetSize(), expected.size());
    EXPECT_EQ(writer.GetBody().ToString(), expected);
    EXPECT_EQ(writer.Finish(), expected);
  }
}


TEST(MultipartWriterTest, CloseTwiceKeepsBody)
{
  MultipartWriter writer;
  writer.AddPart("a");
  writer.AddPart("b");
  writer.Close();
  const size_t segments = writer.GetBody().GetSegments().size();
  const std::string body = writer.GetBody().ToString();

  EXPECT_NO_THROW(writer.Close());
  EXPECT_EQ(writer.GetBody().GetSegments().size(), segments);
  EXPECT_EQ(writer.GetBody().ToString(), body);
  EXPECT_EQ(writer.Finish(), body);
  EXPECT_EQ(writer.GetBody().GetSegments().size(), segments);
}


TEST(MultipartWriterTest, CloseWithoutPartsThrows)
{
  MultipartWriter writer;

  EXPECT_EQ(GetErrorCode([&] { writer.Close(); }), ErrorCode::InternalError);
  EXPECT_EQ(writer.GetBody().GetSize(), 0u);

  // The writer stays open, so a part can still be added.
  writer.AddPart("a");
  EXPECT_EQ(writer.Finish(), MakeSingleStringBody(GetBoundary(writer), {"a"}));
}


TEST(MultipartWriterTest, AddPartAfterCloseThrows)
{
  int liveCount = 0;
  MultipartWriter writer;
  writer.AddPart("a");
  writer.Close();
  const std::string body = writer.GetBody().ToString();
  const size_t segments = writer.GetBody().GetSegments().size();

  EXPECT_EQ(GetErrorCode([&] { writer.AddPart(std::make_unique<CountedBuffer>("b", liveCount)); }),
            ErrorCode::InternalError);
  EXPECT_EQ(GetErrorCode([&] { writer.AddPart(std::string("c")); }), ErrorCode::InternalError);
  EXPECT_EQ(GetErrorCode([&] { writer.AddPart("d", 1); }), ErrorCode::InternalError);

  EXPECT_EQ(liveCount, 0);
  EXPECT_EQ(writer.GetPartCount(), 1u);
  EXPECT_EQ(writer.GetBody().GetSegments().size(), segments);
  EXPECT_EQ(writer.GetBody().ToString(), body);
}


TEST(MultipartWriterTest, RejectedBufferLeavesBody)
{
  int liveCount = 0;
  MultipartWriter writer;
  writer.AddPart("good");
  const std::string boundary = GetBoundary(writer);
  const size_t segments = writer.GetBody().GetSegments().size();
  const uint64_t size = writer.GetBody().GetSize();

  EXPECT_EQ(
      GetErrorCode(
          [&] { writer.AddPart(std::make_unique<CountedBuffer>("x--" + boundary, liveCount)); }),
      ErrorCode::InternalError);

  EXPECT_EQ(liveCount, 0);
  EXPECT_EQ(writer.GetPartCount(), 1u);
  EXPECT_EQ(writer.GetBody().GetSegments().size(), segments);
  EXPECT_EQ(writer.GetBody().GetSize(), size);
  EXPECT_EQ(writer.Finish(), MakeSingleStringBody(boundary, {"good"}));
}
