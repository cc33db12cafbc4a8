/* Generated from proto/ by tools/export_json_tables.py (`make gen`): do not edit.
   The fields of the messages an export page carries, by field number. */

#define PAGE_COMMENTS_FIELD 1

static const MessageSpec corrigo_v1_ExportedComment;
static const MessageSpec corrigo_v1_Comment;
static const MessageSpec corrigo_v1_CommentMessage;
static const MessageSpec corrigo_v1_MessageText;
static const MessageSpec corrigo_v1_Annotations;
static const MessageSpec corrigo_v1_AssignedLabels;
static const MessageSpec corrigo_v1_Label;
static const MessageSpec corrigo_v1_Predictions;
static const MessageSpec corrigo_v1_PredictedLabel;

static const FieldSpec corrigo_v1_ExportedComment_fields[] = {
    {KIND_PYTHON, 0, 0, NULL, 0, NULL},
    {KIND_MESSAGE, 0, 1, "\"comment\":", 10, &corrigo_v1_Comment}, /* comment = 1 */
    {KIND_MESSAGE, 0, 1, "\"annotations\":", 14, &corrigo_v1_Annotations}, /* annotations = 2 */
    {KIND_MESSAGE, 0, 1, "\"predictions\":", 14, &corrigo_v1_Predictions}, /* predictions = 3 */
};
static const MessageSpec corrigo_v1_ExportedComment = {corrigo_v1_ExportedComment_fields, 4};

static const FieldSpec corrigo_v1_Comment_fields[] = {
    {KIND_PYTHON, 0, 0, NULL, 0, NULL},
    {KIND_STRING, 0, 0, "\"id\":", 5, NULL}, /* id = 1 */
    {KIND_STRING, 0, 0, "\"uid\":", 6, NULL}, /* uid = 2 */
    {KIND_STRING, 0, 0, "\"source_id\":", 12, NULL}, /* source_id = 3 */
    {KIND_TIMESTAMP, 0, 1, "\"timestamp\":", 12, NULL}, /* timestamp = 4 */
    {KIND_STRING, 0, 0, "\"thread_id\":", 12, NULL}, /* thread_id = 5 */
    {KIND_MESSAGE, 1, 0, "\"messages\":", 11, &corrigo_v1_CommentMessage}, /* messages = 6 */
    {KIND_STRUCT, 0, 1, "\"user_properties\":", 18, NULL}, /* user_properties = 7 */
    {KIND_STRING, 0, 0, "\"text_format\":", 14, NULL}, /* text_format = 8 */
    {KIND_TIMESTAMP, 0, 1, "\"created_at\":", 13, NULL}, /* created_at = 9 */
    {KIND_TIMESTAMP, 0, 1, "\"last_modified\":", 16, NULL}, /* last_modified = 10 */
    {KIND_STRING, 0, 0, "\"context\":", 10, NULL}, /* context = 11 */
    {KIND_BOOL, 0, 0, "\"has_annotations\":", 18, NULL}, /* has_annotations = 12 */
};
static const MessageSpec corrigo_v1_Comment = {corrigo_v1_Comment_fields, 13};

static const FieldSpec corrigo_v1_CommentMessage_fields[] = {
    {KIND_PYTHON, 0, 0, NULL, 0, NULL},
    {KIND_MESSAGE, 0, 1, "\"subject\":", 10, &corrigo_v1_MessageText}, /* subject = 1 */
    {KIND_MESSAGE, 0, 1, "\"body\":", 7, &corrigo_v1_MessageText}, /* body = 2 */
    {KIND_STRING, 0, 0, "\"from\":", 7, NULL}, /* from = 3 */
    {KIND_STRING, 1, 0, "\"to\":", 5, NULL}, /* to = 4 */
    {KIND_STRING, 1, 0, "\"cc\":", 5, NULL}, /* cc = 5 */
    {KIND_STRING, 1, 0, "\"bcc\":", 6, NULL}, /* bcc = 6 */
    {KIND_TIMESTAMP, 0, 1, "\"sent_at\":", 10, NULL}, /* sent_at = 7 */
    {KIND_STRING, 0, 0, "\"language\":", 11, NULL}, /* language = 8 */
};
static const MessageSpec corrigo_v1_CommentMessage = {corrigo_v1_CommentMessage_fields, 9};

static const FieldSpec corrigo_v1_MessageText_fields[] = {
    {KIND_PYTHON, 0, 0, NULL, 0, NULL},
    {KIND_STRING, 0, 0, "\"text\":", 7, NULL}, /* text = 1 */
};
static const MessageSpec corrigo_v1_MessageText = {corrigo_v1_MessageText_fields, 2};

static const FieldSpec corrigo_v1_Annotations_fields[] = {
    {KIND_PYTHON, 0, 0, NULL, 0, NULL},
    {KIND_MESSAGE, 0, 1, "\"labels\":", 9, &corrigo_v1_AssignedLabels}, /* labels = 1 */
};
static const MessageSpec corrigo_v1_Annotations = {corrigo_v1_Annotations_fields, 2};

static const FieldSpec corrigo_v1_AssignedLabels_fields[] = {
    {KIND_PYTHON, 0, 0, NULL, 0, NULL},
    {KIND_MESSAGE, 1, 0, "\"assigned\":", 11, &corrigo_v1_Label}, /* assigned = 1 */
};
static const MessageSpec corrigo_v1_AssignedLabels = {corrigo_v1_AssignedLabels_fields, 2};

static const FieldSpec corrigo_v1_Label_fields[] = {
    {KIND_PYTHON, 0, 0, NULL, 0, NULL},
    {KIND_STRING, 0, 0, "\"name\":", 7, NULL}, /* name = 1 */
    {KIND_STRING, 0, 0, "\"sentiment\":", 12, NULL}, /* sentiment = 2 */
};
static const MessageSpec corrigo_v1_Label = {corrigo_v1_Label_fields, 3};

static const FieldSpec corrigo_v1_Predictions_fields[] = {
    {KIND_PYTHON, 0, 0, NULL, 0, NULL},
    {KIND_MESSAGE, 1, 0, "\"labels\":", 9, &corrigo_v1_PredictedLabel}, /* labels = 1 */
};
static const MessageSpec corrigo_v1_Predictions = {corrigo_v1_Predictions_fields, 2};

static const FieldSpec corrigo_v1_PredictedLabel_fields[] = {
    {KIND_PYTHON, 0, 0, NULL, 0, NULL},
    {KIND_STRING, 0, 0, "\"name\":", 7, NULL}, /* name = 1 */
    {KIND_DOUBLE, 0, 0, "\"probability\":", 14, NULL}, /* probability = 2 */
    {KIND_DOUBLE, 0, 0, "\"sentiment\":", 12, NULL}, /* sentiment = 3 */
};
static const MessageSpec corrigo_v1_PredictedLabel = {corrigo_v1_PredictedLabel_fields, 4};

static const MessageSpec *const EXPORTED_COMMENT = &corrigo_v1_ExportedComment;
