#include "Common/DicomPrefixReader.h"
#include "DicomFileBuilder.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

using namespace AzureDicom;

namespace
{
const char EXPLICIT_LITTLE_ENDIAN[] = "1.2.840.10008.1.2.1";
const char IMPLICIT_LITTLE_ENDIAN[] = "1.2.840.10008.1.2";
const char EXPLICIT_BIG_ENDIAN[] = "1.2.840.10008.1.2.2";
const char DEFLATED[] = "1.2.840.10008.1.2.1.99";

// A CT instance from pydicom's test files (Debian's python3-pydicom), with sequences before
// the UIDs.
const char PYDICOM_CT_SMALL[] = "/usr/lib/python3/dist-packages/pydicom/data/test_files/CT_small.dcm";


// Adds the identifying elements, with sequences before them whose items hold other values of
// the same tags, which the reader must not take.
void AddIdentifiers(DicomFileBuilder& builder, bool undefinedLengths)
{
  builder.Add(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.2")
      .Add(0x0008, 0x0018, "UI", "1.2.3.4.5")
      .Add(0x0008, 0x0060, "CS", "CT")
      .AddSequence(0x0008, 0x1140, 0x0008, 0x0018, "9.9.9.18", undefinedLengths)
      .Add(0x0010, 0x0010, "PN", "Doe^Jane")
      .Add(0x0010, 0x0020, "LO", "PAT1")
      .AddSequence(0x0010, 0x1002, 0x0020, 0x000D, "9.9.9.13", undefinedLengths)
      .Add(0x0020, 0x000D, "UI", "1.2.3.100")
      .Add(0x0020, 0x000E, "UI", "1.2.3.100.1")
      .Add(0x0020, 0x0013, "IS", "7");
}


void ExpectIdentifiers(const DicomIdentifiers& identifiers)
{
  EXPECT_EQ("1.2.840.10008.5.1.4.1.1.2", identifiers.sopClassUid);
  EXPECT_EQ("1.2.3.4.5", identifiers.sopInstanceUid);
  EXPECT_EQ("PAT1", identifiers.patientId);
  EXPECT_EQ("1.2.3.100", identifiers.studyInstanceUid);
  EXPECT_EQ("1.2.3.100.1", identifiers.seriesInstanceUid);
}


bool ReadIdentifiers(DicomIdentifiers& identifiers, const std::string& file)
{
  return DicomPrefixReader(file.data(), file.size()).ReadIdentifiers(identifiers);
}
}  // namespace


TEST(DicomPrefixReader, EachEncodingSkipsSequences)
{
  for (const char* syntax : {EXPLICIT_LITTLE_ENDIAN, IMPLICIT_LITTLE_ENDIAN, EXPLICIT_BIG_ENDIAN})
  {
    for (bool undefinedLengths : {false, true})
    {
      SCOPED_TRACE(std::string(syntax) + (undefinedLengths ? ", undefined lengths" : ""));
      DicomFileBuilder builder(syntax);
      AddIdentifiers(builder, undefinedLengths);
      DicomIdentifiers identifiers;
      ASSERT_TRUE(ReadIdentifiers(identifiers, builder.GetFile()));
      ExpectIdentifiers(identifiers);
    }
  }
}


TEST(DicomPrefixReader, DataSetWithoutFileMeta)
{
  for (bool explicitVr : {false, true})
  {
    SCOPED_TRACE(explicitVr ? "explicit VR" : "implicit VR");
    DicomFileBuilder builder = DicomFileBuilder::WithoutFileMeta(explicitVr);
    AddIdentifiers(builder, true);
    DicomIdentifiers identifiers;
    ASSERT_TRUE(ReadIdentifiers(identifiers, builder.GetFile()));
    ExpectIdentifiers(identifiers);
  }
}


TEST(DicomPrefixReader, PatientIdMayBeAbsent)
{
  DicomFileBuilder builder(EXPLICIT_LITTLE_ENDIAN);
  builder.Add(0x0008, 0x0018, "UI", "1.2.3.4.5")
      .Add(0x0020, 0x000D, "UI", "1.2.3.100")
      .Add(0x0020, 0x000E, "UI", "1.2.3.100.1");
  DicomIdentifiers identifiers;
  ASSERT_TRUE(ReadIdentifiers(identifiers, builder.GetFile()));
  EXPECT_EQ("", identifiers.patientId);
  EXPECT_EQ("1.2.3.100.1", identifiers.seriesInstanceUid);
}


TEST(DicomPrefixReader, MissingSeriesUidFails)
{
  DicomFileBuilder builder(EXPLICIT_LITTLE_ENDIAN);
  builder.Add(0x0008, 0x0018, "UI", "1.2.3.4.5")
      .Add(0x0020, 0x000D, "UI", "1.2.3.100")
      .Add(0x0020, 0x0013, "IS", "7")
      .Add(0x0028, 0x0010, "US", "xx");
  DicomIdentifiers identifiers;
  EXPECT_FALSE(ReadIdentifiers(identifiers, builder.GetFile()));
  EXPECT_EQ("", identifiers.sopInstanceUid);  // untouched on failure
}


TEST(DicomPrefixReader, TruncatedFile)
{
  DicomFileBuilder builder(EXPLICIT_LITTLE_ENDIAN);
  AddIdentifiers(builder, true);
  const std::string& file = builder.GetFile();
  const size_t seriesEnd = file.find("1.2.3.100.1") + 12;

  for (size_t size = 0; size < seriesEnd; size++)
  {
    DicomIdentifiers identifiers;
    EXPECT_FALSE(DicomPrefixReader(file.data(), size).ReadIdentifiers(identifiers))
        << "size " << size;
  }

  DicomIdentifiers identifiers;
  EXPECT_TRUE(DicomPrefixReader(file.data(), seriesEnd).ReadIdentifiers(identifiers));
}


TEST(DicomPrefixReader, SopUidsStopAtSopInstanceUid)
{
  DicomFileBuilder builder(EXPLICIT_LITTLE_ENDIAN);
  AddIdentifiers(builder, true);
  const std::string& file = builder.GetFile();
  const size_t sopEnd = file.find("1.2.3.4.5") + 10;

  DicomIdentifiers identifiers;
  ASSERT_TRUE(DicomPrefixReader(file.data(), sopEnd).ReadSopUids(identifiers));
  EXPECT_EQ("1.2.840.10008.5.1.4.1.1.2", identifiers.sopClassUid);
  EXPECT_EQ("1.2.3.4.5", identifiers.sopInstanceUid);
  EXPECT_EQ("", identifiers.studyInstanceUid);
}


TEST(DicomPrefixReader, DeflatedDataSetUsesFileMetaForSopUids)
{
  DicomFileBuilder builder(DEFLATED);
  builder.AddMeta(0x0002, "1.2.840.10008.5.1.4.1.1.2").AddMeta(0x0003, "1.2.3.4.5");
  const std::string deflatedDataSet("\x78\x9c\x63\x60\x00\x02\x00\x00\x00\x03", 10);
  const std::string file = builder.GetFile() + deflatedDataSet;

  DicomIdentifiers identifiers;
  ASSERT_TRUE(DicomPrefixReader(file.data(), file.size()).ReadSopUids(identifiers));
  EXPECT_EQ("1.2.3.4.5", identifiers.sopInstanceUid);
  EXPECT_EQ("1.2.840.10008.5.1.4.1.1.2", identifiers.sopClassUid);

  DicomIdentifiers none;
  EXPECT_FALSE(DicomPrefixReader(file.data(), file.size()).ReadIdentifiers(none));
}


TEST(DicomPrefixReader, GarbageIsRejected)
{
  const std::string zeros(4096, '\0');
  const std::string ones(4096, '\xff');
  // A meta element whose length goes past the end.
  const std::string lengths = std::string(128, '\0') + "DICM" +
                              std::string("\x02\x00\x10\x00UI\xff\xff", 8);

  for (const std::string* file : {&zeros, &ones, &lengths})
  {
    DicomIdentifiers identifiers;
    EXPECT_FALSE(DicomPrefixReader(file->data(), file->size()).ReadIdentifiers(identifiers));
    EXPECT_FALSE(DicomPrefixReader(file->data(), file->size()).ReadSopUids(identifiers));
  }
}


TEST(DicomPrefixReader, RealCtFile)
{
  std::ifstream stream(PYDICOM_CT_SMALL, std::ios::binary);
  ASSERT_TRUE(stream.good()) << PYDICOM_CT_SMALL << " is missing: install python3-pydicom";
  std::stringstream content;
  content << stream.rdbuf();
  const std::string file = content.str();

  DicomIdentifiers identifiers;
  ASSERT_TRUE(ReadIdentifiers(identifiers, file));
  EXPECT_EQ("1CT1", identifiers.patientId);
  EXPECT_EQ("1.3.6.1.4.1.5962.1.2.1.20040119072730.12322", identifiers.studyInstanceUid);
  EXPECT_EQ("1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322", identifiers.seriesInstanceUid);
  EXPECT_EQ("1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322", identifiers.sopInstanceUid);
  EXPECT_EQ("1.2.840.10008.5.1.4.1.1.2", identifiers.sopClassUid);
}
